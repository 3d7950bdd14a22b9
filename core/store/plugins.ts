import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { definePlugin } from '../registry/plugin.js';
import { FileStore } from './file/file-store.js';
import { bucketPattern, partSizeOption, prefixProblem } from '../wire/s3/names.js';

const mebibyte = 1024 * 1024;
const twoOrFour = { error: 'must be 2 or 4' };

export const fileStorePlugin = definePlugin({
  id: 'file',
  kind: 'store',
  description: 'Image files in a local folder (atomic writes, fsync)',
  optionsSchema: z.strictObject({
    path: z.string().min(1).default('images').describe('folder, relative to the data directory'),
    fsync: z.boolean().default(true),
  }),
  create: (options, context) =>
    new FileStore({
      root: isAbsolute(options.path) ? options.path : resolve(context.dataDir, options.path),
      fsync: options.fsync,
    }),
});

export const s3StorePlugin = definePlugin({
  id: 's3',
  kind: 'store',
  description: 'Objects in an S3-family bucket: AWS S3, Eucalyptus Walrus, Nimbus Cumulus, Ceph RGW, Swift s3api',
  optionsSchema: z.strictObject({
    endpoint: z
      .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
      .optional()
      .describe('service URL; omit for AWS'),
    region: z.string().min(1).default('us-east-1'),
    forcePathStyle: z
      .boolean()
      .optional()
      .describe('path-style URLs (host/bucket/key); default: true when endpoint is set'),
    accessKeyId: z.string().min(1),
    secretAccessKey: z.string().min(1).describe('use ${ENV_VAR}'),
    sessionToken: z.string().min(1).optional(),
    bucket: z.string().regex(bucketPattern, 'must be a bucket name (3-255 letters, digits, ".", "_", "-")'),
    prefix: z
      .string()
      .default('')
      .superRefine((prefix, ctx) => {
        const problem = prefixProblem(prefix);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .describe('prepended to every object key, e.g. "images/"'),
    createBucket: z.boolean().default(false).describe('create the bucket on first put when it is missing'),
    partSize: partSizeOption(16 * mebibyte),
    concurrency: z.number().int().min(1).max(64).default(4).describe('parts in memory and in flight at once'),
    // 'v2'/'v4' as the Eucalyptus and Nimbus adapters spell their EC2 option; '2' from a ${VAR}.
    signatureVersion: z
      .union([z.literal([2, 4], twoOrFour), z.literal(['2', '4', 'v2', 'v4'], twoOrFour)], twoOrFour)
      .transform((v): 2 | 4 => (typeof v === 'number' ? v : v.endsWith('2') ? 2 : 4))
      .default(4)
      .describe("request signing: 4 (SigV4), or 2 (S3's V2 scheme) for Walrus, Cumulus and other old servers"),
  }),
  create: async (options, context) => {
    context.secrets.add(options.secretAccessKey);
    context.secrets.add(options.sessionToken);
    // Loaded on demand: the AWS SDK costs start-up time that file-store users should not pay.
    const { S3Store } = await import('./s3/s3-store.js');
    return new S3Store({
      ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
      region: options.region,
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken !== undefined ? { sessionToken: options.sessionToken } : {}),
      bucket: options.bucket,
      prefix: options.prefix,
      createBucket: options.createBucket,
      partSize: options.partSize,
      concurrency: options.concurrency,
      signatureVersion: options.signatureVersion,
      logger: context.logger.child({ store: context.name }),
    });
  },
});
