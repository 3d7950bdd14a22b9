import { z } from 'zod';
import { loadPem, seconds } from '../../core/iaas/kit/index.js';
import { diskFormats } from '../../core/image/model.js';
import { definePlugin } from '../../core/registry/plugin.js';
import type { OciCredentials } from '../../core/wire/oci/auth.js';
import { credentialsFromAuthFile } from '../../core/wire/oci/auth-file.js';
import { repositoryPattern } from '../../core/wire/oci/media.js';
import { OciDriver } from './driver.js';

export { OciDriver, type OciDriverOptions } from './driver.js';

const auth = z.union([
  z.strictObject({ username: z.string().min(1), password: z.string().min(1) }),
  z.strictObject({ token: z.string().min(1).describe('a bearer token the registry accepts as it is') }),
  z.strictObject({ authFile: z.string().min(1).describe('a docker login-style auth file (~/.docker/config.json)') }),
]);

export const ociOptionsSchema = z.strictObject({
  registry: z
    .string()
    .regex(/^[a-zA-Z0-9.-]+(:\d{1,5})?$/, 'must be HOST or HOST:PORT (no scheme, no path)')
    .describe('the registry, e.g. harbor.example.org or 127.0.0.1:5000'),
  repository: z.string().regex(repositoryPattern, 'must be a repository name (lowercase a-z 0-9 . _ - /)').max(255),
  plainHttp: z.boolean().default(false).describe('speak http, not https (a registry on loopback or in a lab)'),
  auth: auth.optional().describe('anonymous when left out'),
  caBundle: z.string().min(1).optional().describe('PEM file of extra CAs to trust, relative to the data directory'),
  access: z
    .enum(['public', 'private'])
    .default('private')
    .describe('who may pull from the repository, as the registry is set up; private images never go to a public one'),
  diskFormats: z.array(z.enum(diskFormats)).min(1).default(['qcow2', 'raw']),
  pageSize: z.number().int().min(1).max(10_000).default(100),
  chunkSize: z.number().int().min(1).max(4096).default(64).describe('MiB; larger layers are uploaded in chunks'),
  maxManifestSize: z.number().int().min(1).max(64).default(4).describe('MiB; larger manifests are refused unread'),
  allowNetworks: z.array(z.string()).default([]).describe('private CIDR blocks blob redirects may go to'),
  timeouts: z
    .strictObject({ request: seconds(3600).default(60).describe('seconds to wait for an answer') })
    .default({ request: 60 }),
});
export type OciOptions = z.infer<typeof ociOptionsSchema>;

export const ociPlugin = definePlugin({
  id: 'oci',
  kind: 'iaas',
  description: 'An OCI registry (Harbor, Zot, distribution, GHCR): images published as ORAS-style disk artifacts',
  optionsSchema: ociOptionsSchema,
  create: async (options, context) => {
    let credentials: OciCredentials;
    if (options.auth && 'authFile' in options.auth) {
      credentials = await credentialsFromAuthFile(options.registry, options.auth.authFile);
    } else credentials = options.auth;
    if (credentials) context.secrets.add('token' in credentials ? credentials.token : credentials.password);
    const pem = { option: 'caBundle', cloud: context.name, dataDir: context.dataDir, certificate: true };
    const caBundle = options.caBundle !== undefined ? await loadPem(options.caBundle, pem) : undefined;
    return new OciDriver({
      registry: options.registry,
      repository: options.repository,
      plainHttp: options.plainHttp,
      ...(credentials ? { credentials } : {}),
      ...(caBundle !== undefined ? { caBundle } : {}),
      access: options.access,
      diskFormats: options.diskFormats,
      pageSize: options.pageSize,
      chunkBytes: options.chunkSize * 1024 * 1024,
      maxManifestBytes: options.maxManifestSize * 1024 * 1024,
      allowNetworks: options.allowNetworks,
      timeoutMs: options.timeouts.request * 1000,
      logger: context.logger.child({ adapter: 'oci', cloud: context.name }),
    });
  },
});
