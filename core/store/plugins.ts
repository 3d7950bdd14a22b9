import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { definePlugin } from '../registry/plugin.js';
import { FileStore } from './file/file-store.js';

export const fileStorePlugin = definePlugin({
  id: 'file',
  kind: 'store',
  description: 'Image files in a local folder (atomic writes, fsync)',
  optionsSchema: z.strictObject({
    path: z.string().min(1).default('images').describe('folder, relative to the data directory'),
    fsync: z.boolean().default(true),
  }),
  create: (options, context) => new FileStore({ root: isAbsolute(options.path) ? options.path : resolve(context.dataDir, options.path), fsync: options.fsync }),
});
