import { z } from 'zod';
import { definePlugin } from '../../registry/plugin.js';
import { HttpStore } from './http-store.js';

export const httpStorePlugin = definePlugin({
  id: 'http',
  kind: 'store',
  description: 'Read-only references to images served over HTTP(S)',
  optionsSchema: z.strictObject({
    allowPrivateNetworks: z.boolean().default(false).describe('allow loopback/private/link-local addresses (off: SSRF protection)'),
    timeoutMs: z.number().int().min(100).default(30_000),
    maxRedirects: z.number().int().min(0).max(20).default(5),
  }),
  create: (options) => new HttpStore(options),
});
