import { definePlugin } from 'visor';
import { tinyCloud } from './cloud.js';
import { TinyCloudDriver } from './driver.js';
import { tinyCloudOptionsSchema } from './schema.js';

export { TinyCloud, TinyCloudError, tinyCloud, type TinyRecord } from './cloud.js';
export { TinyCloudDriver } from './driver.js';
export { tinyCloudOptionsSchema, type TinyCloudOptions } from './schema.js';

/**
 * The package's plugins: one IaaS adapter, `tinycloud`. visor validates each cloud's options
 * with the schema and calls `create` for the cloud's driver; no container binding is written here.
 */
export default definePlugin({
  adapters: {
    tinycloud: {
      description: 'A tiny in-process cloud (example third-party adapter)',
      optionsSchema: tinyCloudOptionsSchema,
      create: (options, context) => {
        context.secrets.add(options.token);
        const cloud = tinyCloud(options.cloud);
        return new TinyCloudDriver({
          cloud,
          project: options.project,
          token: options.token,
          pageSize: options.pageSize,
        });
      },
    },
  },
});
