import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { VisorError } from '../../errors.js';
import { definePlugin } from '../../registry/plugin.js';
import type { OciCredentials } from '../../wire/oci/auth.js';
import { credentialsFromAuthFile } from '../../wire/oci/auth-file.js';
import { repositoryPattern, tagPattern } from '../../wire/oci/media.js';
import { OciSource } from './oci-source.js';

const auth = z.union([
  z.strictObject({ username: z.string().min(1), password: z.string().min(1) }),
  z.strictObject({ token: z.string().min(1) }),
  z.strictObject({ authFile: z.string().min(1).describe('a docker login-style auth file') }),
]);

export const ociSourceOptionsSchema = z
  .strictObject({
    registry: z.string().regex(/^[a-zA-Z0-9.-]+(:\d{1,5})?$/, 'must be HOST or HOST:PORT (no scheme, no path)'),
    repository: z.string().regex(repositoryPattern, 'must be a repository name (lowercase a-z 0-9 . _ - /)').max(255),
    plainHttp: z.boolean().default(false).describe('speak http, not https (a registry on loopback or in a lab)'),
    auth: auth.optional().describe('anonymous when left out'),
    caBundle: z.string().min(1).optional().describe('PEM file of extra CAs to trust, relative to the data directory'),
    tags: z.array(z.string().regex(tagPattern, 'must be a tag')).min(1).optional(),
    tagPattern: z
      .string()
      .min(1)
      .max(200)
      .refine((p) => {
        try {
          new RegExp(p);
          return true;
        } catch {
          return false;
        }
      }, 'must be a regular expression')
      .optional(),
    allowNetworks: z.array(z.string()).default([]).describe('private CIDR blocks blob redirects may go to'),
    allowPrivateNetworks: z.boolean().default(false).describe('blob redirects to loopback/private addresses'),
    maxManifestSize: z.number().int().min(1).max(64).default(4).describe('MiB; larger manifests are refused unread'),
    maxTags: z.number().int().min(1).max(1_000_000).default(10_000),
  })
  .refine((o) => o.tags === undefined || o.tagPattern === undefined, {
    message: 'give tags or tagPattern, not both',
    path: ['tagPattern'],
  });

export const ociSourcePlugin = definePlugin({
  id: 'oci',
  kind: 'source',
  description: 'An OCI registry repository of ORAS-style disk artifacts (EGI, Harbor, Zot, distribution, GHCR)',
  optionsSchema: ociSourceOptionsSchema,
  create: async (options, context) => {
    let credentials: OciCredentials;
    if (options.auth && 'authFile' in options.auth) {
      const file = isAbsolute(options.auth.authFile)
        ? options.auth.authFile
        : resolve(context.dataDir, options.auth.authFile);
      credentials = await credentialsFromAuthFile(options.registry, file);
    } else credentials = options.auth;
    if (credentials) context.secrets.add('token' in credentials ? credentials.token : credentials.password);
    let caBundle: string | undefined;
    if (options.caBundle !== undefined) {
      const path = isAbsolute(options.caBundle) ? options.caBundle : resolve(context.dataDir, options.caBundle);
      caBundle = await readFile(path, 'utf8').catch((error: Error) => {
        throw new VisorError('config', `caBundle ${path}: ${error.message}`);
      });
      if (!caBundle.includes('-----BEGIN CERTIFICATE-----'))
        throw new VisorError('config', `caBundle ${path} holds no certificate`);
    }
    return new OciSource({
      registry: options.registry,
      repository: options.repository,
      plainHttp: options.plainHttp,
      ...(credentials ? { credentials } : {}),
      ...(caBundle ? { caBundle } : {}),
      ...(options.tags ? { tags: options.tags } : {}),
      ...(options.tagPattern ? { tagPattern: options.tagPattern } : {}),
      allowNetworks: options.allowNetworks,
      allowPrivateNetworks: options.allowPrivateNetworks,
      maxManifestBytes: options.maxManifestSize * 1024 * 1024,
      maxTags: options.maxTags,
    });
  },
});
