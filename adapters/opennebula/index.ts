import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ignoredSeconds, seconds, warnIgnoredTimeout } from '../../core/iaas/kit/index.js';
import { definePlugin } from '../../core/registry/plugin.js';
import { poolFilters, type PoolFilter } from './client-pool-filters.js';

// Types only: the driver (and its XML-RPC and XML packages, a few hundred modules) is imported
// when an OpenNebula cloud is configured, not by every process that registers the plugin.
export type { OpenNebulaDriver, OpenNebulaDriverOptions, OpenNebulaMode } from './driver.js';

const datastoreRef = z.union([z.number().int().min(0), z.string().min(1)]);

export const openNebulaOptionsSchema = z
  .strictObject({
    endpoint: z.url({
      protocol: /^https?$/,
      error: "must be the http(s) URL of oned's XML-RPC API, e.g. http://one:2633/RPC2",
    }),
    username: z
      .string()
      .min(1)
      .refine((u) => !u.includes(':'), 'must not contain ":" (the session string is user:password)'),
    password: z.string().min(1).describe('password or login token of the user'),
    datastore: datastoreRef.describe('image datastore (IMAGE_DS), by name or id'),
    filesDatastore: datastoreRef.optional().describe('file datastore (FILE_DS) for kernel and ramdisk images'),
    mode: z
      .enum(['remote', 'local'])
      .default('remote')
      .describe(
        'remote: oned fetches a URL the agent serves; local: the agent runs beside oned and gives it a file path',
      ),
    stagingDir: z
      .string()
      .min(1)
      .optional()
      .describe(
        "local mode: folder for files handed to oned (in the datastore's SAFE_DIRS), relative to the data directory",
      ),
    imageType: z.enum(['OS', 'DATABLOCK']).default('OS').describe('TYPE of machine disk images (ISOs are CDROM)'),
    devPrefix: z
      .string()
      .regex(/^[a-z]{1,8}$/, 'must be a device prefix such as vd, sd or hd')
      .optional(),
    persistent: z.boolean().default(false),
    ownership: z
      .enum(Object.keys(poolFilters) as [PoolFilter, ...PoolFilter[]])
      .default('mine')
      .describe('which images list shows: mine, mineAndGroups, primaryGroup or all'),
    pageSize: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .default(0)
      .describe('images per one.imagepool.info call; 0 reads the pool in one call'),
    timeouts: z
      .strictObject({
        request: seconds(3600).default(60).describe('seconds one XML-RPC call may take'),
        readyWait: ignoredSeconds(),
      })
      .default({ request: 60 }),
    pollInterval: seconds(600).default(5).describe('seconds between state checks while waiting'),
    retire: z
      .strictObject({
        expiredPrefix: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,32}$/, 'must be letters, digits, _ or -')
          .default('EXPIRED_'),
        chmod: z
          .string()
          .regex(/^[0-7]{3}$/, 'must be three octal digits, e.g. 600')
          .default('600'),
      })
      .default({ expiredPrefix: 'EXPIRED_', chmod: '600' }),
    sharing: z
      .strictObject({
        homeGroup: z.number().int().min(0).describe("the group visor's images are in when shared with no one"),
      })
      .optional()
      .describe('share images with a group (one.image.chown); an image has one group'),
    maxResponseMegabytes: z.number().int().min(1).max(4096).default(256).describe('largest XML-RPC reply accepted'),
  })
  .refine((o) => o.mode !== 'local' || o.stagingDir !== undefined, {
    message: 'local mode needs a stagingDir',
    path: ['stagingDir'],
  });
export type OpenNebulaOptions = z.infer<typeof openNebulaOptionsSchema>;

export const openNebulaPlugin = definePlugin({
  id: 'opennebula',
  kind: 'iaas',
  description:
    'OpenNebula (XML-RPC API, 5.x to 7.x): images in an image datastore, imported from a URL or a local path',
  optionsSchema: openNebulaOptionsSchema,
  create: async (options, context) => {
    context.secrets.add(options.password);
    context.secrets.add(`${options.username}:${options.password}`);
    const logger = context.logger.child({ adapter: 'opennebula', cloud: context.name });
    warnIgnoredTimeout(logger, context.name, 'readyWait', options.timeouts.readyWait);
    const { OpenNebulaDriver } = await import('./driver.js');
    return new OpenNebulaDriver({
      endpoint: options.endpoint,
      username: options.username,
      password: options.password,
      datastore: options.datastore,
      filesDatastore: options.filesDatastore,
      mode: options.mode,
      stagingDir:
        options.stagingDir === undefined
          ? undefined
          : isAbsolute(options.stagingDir)
            ? options.stagingDir
            : resolve(context.dataDir, options.stagingDir),
      imageType: options.imageType,
      devPrefix: options.devPrefix,
      persistent: options.persistent,
      ownership: options.ownership,
      pageSize: options.pageSize,
      requestTimeoutMs: options.timeouts.request * 1000,
      pollIntervalMs: options.pollInterval * 1000,
      retire: options.retire,
      ...(options.sharing ? { homeGroup: options.sharing.homeGroup } : {}),
      maxResponseBytes: options.maxResponseMegabytes * 1024 * 1024,
      logger,
    });
  },
});
