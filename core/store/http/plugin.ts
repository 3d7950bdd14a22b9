import { isIP } from 'node:net';
import { z } from 'zod';
import { definePlugin } from '../../registry/plugin.js';
import { HttpStore } from './http-store.js';

const cidr = z.string().refine((value) => {
  const [net = '', bits, ...rest] = value.split('/');
  const max = isIP(net) === 4 ? 32 : 128;
  const prefixOk = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
  return isIP(net) !== 0 && rest.length === 0 && prefixOk;
}, 'must be an IP address or a CIDR block, e.g. 10.1.2.0/24');

export const httpStorePlugin = definePlugin({
  id: 'http',
  kind: 'store',
  description: 'Read-only references to images served over HTTP(S)',
  optionsSchema: z.strictObject({
    allowPrivateNetworks: z
      .boolean()
      .default(false)
      .describe('allow every loopback/private/link-local/reserved address (off: SSRF protection)'),
    allowNetworks: z
      .array(cidr)
      .default([])
      .describe('CIDR blocks allowed although private (an internal mirror), the rest stays refused'),
    timeoutMs: z.number().int().min(100).default(30_000),
    maxRedirects: z.number().int().min(0).max(20).default(5),
  }),
  create: (options) => new HttpStore(options),
});
