import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { definePlugin } from '../registry/plugin.js';
import { HepixSource } from './hepix/hepix-source.js';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });
const localPath = (dataDir: string, path: string | undefined) =>
  path === undefined ? undefined : isAbsolute(path) ? path : resolve(dataDir, path);

export const hepixSourcePlugin = definePlugin({
  id: 'hepix',
  kind: 'source',
  description: 'HEPiX image lists (EGI AppDB, vmcatcher): S/MIME signed JSON, verified against a CA folder',
  optionsSchema: z
    .strictObject({
      url: httpUrl,
      caPath: z.string().min(1).optional().describe('folder of hashed CA certificates, e.g. /etc/grid-security/certificates'),
      caFile: z.string().min(1).optional().describe('PEM bundle of trusted CAs'),
      crls: z.boolean().default(false).describe('check the CRLs in caPath'),
      endorsers: z
        .array(z.union([z.string().min(1).transform((dn) => ({ dn })), z.strictObject({ dn: z.string().min(1), ca: z.string().min(1).optional() })]))
        .default([])
        .describe('DNs (or { dn, ca }) of the endorsers accepted for this list'),
      requireSignature: z.boolean().default(true),
      allowPrivateNetworks: z.boolean().default(false).describe('lists or images on loopback/private addresses'),
    })
    .refine((o) => !o.requireSignature || o.caPath !== undefined || o.caFile !== undefined, {
      message: 'a signed list needs caPath or caFile (or requireSignature: false)',
      path: ['caPath'],
    }),
  create: (options, context) => {
    const caPath = localPath(context.dataDir, options.caPath);
    const caFile = localPath(context.dataDir, options.caFile);
    return new HepixSource({
      url: options.url,
      ...(caPath ? { caPath } : {}),
      ...(caFile ? { caFile } : {}),
      crls: options.crls,
      endorsers: options.endorsers.map((e) => ('ca' in e && e.ca ? { dn: e.dn, ca: e.ca } : { dn: e.dn })),
      requireSignature: options.requireSignature,
      allowPrivateNetworks: options.allowPrivateNetworks,
    });
  },
});
