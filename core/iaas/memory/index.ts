import { z } from 'zod';
import { diskFormats } from '../../image/model.js';
import { definePlugin } from '../../registry/plugin.js';
import { seconds } from '../kit/index.js';
import { retireModes } from '../port.js';
import { MemoryCloud } from './client.js';
import { MemoryDriver } from './driver.js';

export { MemoryCloud, type MemoryCloudOptions, type NativeImage } from './client.js';
export { MemoryDriver, type MemoryDriverOptions } from './driver.js';

/**
 * The memory adapter as a plugin: the options schema (validated when the config loads, so a
 * mistake is a `config` error with its file position, before any cloud is called) and `create`,
 * which builds a driver from valid options. Every adapter's index.ts has this shape.
 */
export const memoryOptionsSchema = z.strictObject({
  cloud: z
    .string()
    .min(1)
    .default('memory')
    .describe('targets naming the same cloud share its images (one per process)'),
  project: z.string().min(1).default('visor').describe('whose images the target lists and makes'),
  diskFormats: z.array(z.enum(diskFormats)).min(1).default(['raw', 'qcow2']),
  retireModes: z
    .array(z.enum(retireModes))
    .min(1)
    .default([...retireModes]),
  pageSize: z.number().int().min(1).max(1000).default(100),
  acceptFor: z
    .array(z.string().min(1))
    .default([])
    .describe('member projects whose acceptance of a shared image the driver gives on their behalf'),
  pollInterval: seconds(60).default(0.01).describe('seconds between status reads while waiting'),
});

/** One cloud per name and process: two targets of one config see each other's images, as in a real cloud. */
const clouds = new Map<string, MemoryCloud>();

export const memoryPlugin = definePlugin({
  id: 'memory',
  kind: 'iaas',
  description: 'An image cloud kept in memory, for tests, demos and trying a config; the example adapter',
  optionsSchema: memoryOptionsSchema,
  create: (options, context) => {
    let cloud = clouds.get(options.cloud);
    if (!cloud) {
      cloud = new MemoryCloud({ name: options.cloud });
      clouds.set(options.cloud, cloud);
    }
    return new MemoryDriver({
      cloud,
      project: options.project,
      diskFormats: options.diskFormats,
      retireModes: options.retireModes,
      pageSize: options.pageSize,
      acceptFor: options.acceptFor,
      pollIntervalMs: options.pollInterval * 1000,
      logger: context.logger.child({ adapter: 'memory', cloud: context.name }),
    });
  },
});
