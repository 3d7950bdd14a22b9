import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { definePlugin } from '../registry/plugin.js';
import { HepixSource } from './hepix/hepix-source.js';
import { SimplestreamsSource } from './simplestreams/simplestreams-source.js';

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
      caPath: z
        .string()
        .min(1)
        .optional()
        .describe('folder of hashed CA certificates, e.g. /etc/grid-security/certificates'),
      caFile: z.string().min(1).optional().describe('PEM bundle of trusted CAs'),
      crls: z.boolean().default(false).describe('check the CRLs in caPath'),
      endorsers: z
        .array(
          z.union([
            z
              .string()
              .min(1)
              .transform((dn) => ({ dn })),
            z.strictObject({ dn: z.string().min(1), ca: z.string().min(1).optional() }),
          ]),
        )
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

export const simplestreamsSourcePlugin = definePlugin({
  id: 'simplestreams',
  kind: 'source',
  description: 'simplestreams mirrors (Ubuntu cloud images, MAAS): index + products JSON, .sjson verified with gpgv',
  optionsSchema: z.strictObject({
    url: httpUrl.describe('mirror root; every path in the stream is relative to it'),
    index: z
      .string()
      .min(1)
      .optional()
      .describe('index path (default streams/v1/index.sjson with a keyring, else index.json)'),
    keyring: z.string().min(1).optional().describe('OpenPGP keyring (gpg --export) the documents must be signed with'),
    contentIds: z.array(z.string().min(1)).optional(),
    ftypes: z
      .array(z.string().min(1))
      .optional()
      .describe('item types to import (default disk1.img, disk-kvm.img, disk.img, qcow2)'),
    filters: z
      .array(
        z
          .string()
          .regex(/^[A-Za-z][A-Za-z0-9_.:-]*(!=|!~|=|~)/, 'must be key=value, key!=value, key~regex or key!~regex'),
      )
      .default([])
      .describe('simplestreams filters on the flattened item, applied before versions are chosen'),
    allowPrivateNetworks: z.boolean().default(false),
  }),
  create: (options, context) => {
    const keyring = localPath(context.dataDir, options.keyring);
    return new SimplestreamsSource({
      url: options.url,
      ...(options.index ? { index: options.index } : {}),
      ...(keyring ? { keyring } : {}),
      ...(options.contentIds ? { contentIds: options.contentIds } : {}),
      ...(options.ftypes ? { ftypes: options.ftypes } : {}),
      filters: options.filters,
      allowPrivateNetworks: options.allowPrivateNetworks,
    });
  },
});
