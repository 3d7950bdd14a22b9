import { z } from 'zod';
import { retireModes } from '../../core/iaas/port.js';
import { ignoredSeconds, loadPem, seconds, warnIgnoredTimeout } from '../../core/iaas/kit/index.js';
import { definePlugin } from '../../core/registry/plugin.js';
import type { KeystoneCredentials } from './client-keystone.js';
import { GlanceDriver } from './driver.js';
import { keystoneInterfaces } from './schema.js';

export { GlanceDriver, type GlanceDriverOptions, type GlanceImportMethod } from './driver.js';

const passwordAuth = z
  .strictObject({
    type: z.literal('password'),
    username: z.string().min(1),
    password: z.string().min(1),
    userDomainName: z.string().min(1).default('Default'),
    projectName: z.string().min(1).optional(),
    projectId: z.string().min(1).optional(),
    projectDomainName: z.string().min(1).default('Default'),
  })
  .refine((a) => (a.projectName === undefined) !== (a.projectId === undefined), {
    message: 'give exactly one of projectName and projectId (Glance needs a project-scoped token)',
    path: ['projectName'],
  });

const applicationCredentialAuth = z
  .strictObject({
    type: z.literal('applicationCredential'),
    id: z.string().min(1).optional(),
    name: z.string().min(1).optional(),
    username: z.string().min(1).optional(),
    userId: z.string().min(1).optional(),
    userDomainName: z.string().min(1).optional(),
    secret: z.string().min(1),
  })
  .refine((a) => a.id !== undefined || (a.name !== undefined && (a.username !== undefined || a.userId !== undefined)), {
    message: 'give the application credential id, or its name together with username (or userId)',
    path: ['id'],
  });

const authSchema = z.discriminatedUnion('type', [passwordAuth, applicationCredentialAuth]);

export const glanceOptionsSchema = z.strictObject({
  authUrl: z.url({ protocol: /^https?$/, error: 'must be the http(s) URL of Keystone (v3)' }),
  region: z.string().min(1).optional(),
  interface: z.enum(keystoneInterfaces).default('public'),
  auth: authSchema,
  memberAuth: z
    .array(authSchema)
    .default([])
    .describe('credentials of member projects: a shared image is accepted as each, so it shows in their listings'),
  caBundle: z.string().min(1).optional().describe('PEM file of extra CAs to trust, relative to the data directory'),
  importMethod: z.enum(['upload', 'glance-direct', 'web-download']).default('upload'),
  pageSize: z.number().int().min(1).max(1000).default(200),
  timeouts: z
    .strictObject({
      request: seconds(3600).default(60).describe('seconds without progress before one HTTP request fails'),
      activeWait: ignoredSeconds(),
    })
    .default({ request: 60 }),
  pollInterval: seconds(600).default(2).describe('seconds between status checks while waiting'),
  retireModes: z
    .array(z.enum(retireModes))
    .min(1)
    .refine((m) => new Set(m).size === m.length, 'must not repeat a mode')
    .default([...retireModes])
    .describe('retire modes to use; leave out "disable" where the cloud\'s policy keeps deactivation for admins'),
});
export type GlanceOptions = z.infer<typeof glanceOptionsSchema>;

export const glancePlugin = definePlugin({
  id: 'glance',
  kind: 'iaas',
  description: 'OpenStack Glance (image API v2) with Keystone v3 authentication',
  optionsSchema: glanceOptionsSchema,
  create: async (options, context) => {
    const auth = options.auth;
    for (const a of [auth, ...options.memberAuth]) context.secrets.add(a.type === 'password' ? a.password : a.secret);
    const pem = { option: 'caBundle', cloud: context.name, dataDir: context.dataDir, certificate: true };
    const caBundle = options.caBundle !== undefined ? await loadPem(options.caBundle, pem) : undefined;
    const logger = context.logger.child({ adapter: 'glance', cloud: context.name });
    warnIgnoredTimeout(logger, context.name, 'activeWait', options.timeouts.activeWait);
    return new GlanceDriver({
      authUrl: options.authUrl,
      ...(options.region !== undefined ? { region: options.region } : {}),
      interface: options.interface,
      credentials: credentialsOf(auth),
      ...(caBundle !== undefined ? { caBundle } : {}),
      importMethod: options.importMethod,
      pageSize: options.pageSize,
      requestTimeoutMs: options.timeouts.request * 1000,
      pollIntervalMs: options.pollInterval * 1000,
      retireModes: options.retireModes,
      memberCredentials: options.memberAuth.map(credentialsOf),
      logger,
    });
  },
});

function credentialsOf(auth: GlanceOptions['auth']): KeystoneCredentials {
  if (auth.type === 'password') {
    return {
      type: 'password',
      username: auth.username,
      password: auth.password,
      userDomainName: auth.userDomainName,
      ...(auth.projectId !== undefined ? { projectId: auth.projectId } : { projectName: auth.projectName! }),
      projectDomainName: auth.projectDomainName,
    };
  }
  const { type: _type, ...rest } = auth;
  return {
    type: 'applicationCredential',
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    secret: auth.secret,
  } as KeystoneCredentials;
}
