import { z } from 'zod';
import { ignoredSeconds, loadPem, seconds, warnIgnoredTimeout } from '../../core/iaas/kit/index.js';
import { definePlugin } from '../../core/registry/plugin.js';
import { bucketPattern, partSizeOption, refinePrefix } from '../../core/wire/s3/names.js';

// Types only: the driver (and the AWS SDK under it) is imported when a Nimbus cloud is configured.
export type { NimbusDriver, NimbusDriverOptions } from './driver.js';

const mebibyte = 1024 * 1024;
const folderName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be letters, digits, ".", "_" or "-" (one folder name, no "/")');

export const nimbusOptionsSchema = z
  .strictObject({
    endpoint: z.url({
      protocol: /^https?$/,
      error: 'must be the http(s) URL of Cumulus, e.g. http://nimbus.example.org:8888',
    }),
    region: z.string().min(1).default('us-east-1').describe('signing region (Cumulus ignores it)'),
    accessKeyId: z.string().min(1).describe('the Cumulus access id (vws.repository.s3id)'),
    secretAccessKey: z.string().min(1).describe('the Cumulus secret (vws.repository.s3key); use ${ENV_VAR}'),
    canonicalId: folderName.describe(
      "the user's canonical id: their folder VMS/<canonicalId>/ (nimbus-list-users shows it)",
    ),
    bucket: z.string().regex(bucketPattern, 'must be a bucket name').default('Repo').describe('cumulus.repo.bucket'),
    prefix: z
      .string()
      .min(1, 'must not be empty: Nimbus keys are <prefix>/<folder>/<name>')
      .default('VMS/')
      // Nimbus's configs say `VMS`; keys are `VMS/<folder>/<name>`.
      .transform((p) => (p.endsWith('/') ? p : `${p}/`))
      .superRefine(refinePrefix)
      .describe('cumulus.repo.prefix, with or without its trailing "/"'),
    commonFolder: folderName.default('common').describe('the folder of site-wide (public) images'),
    compress: z
      .enum(['none', 'gzip'])
      .default('none')
      .describe('store images gzip-compressed (Nimbus unpacks .gz images at propagation)'),
    partSize: partSizeOption(16 * mebibyte),
    concurrency: z.number().int().min(1).max(64).default(4).describe('parts in memory and in flight at once'),
    pageSize: z.number().int().min(1).max(1000).default(1000).describe('keys per ListObjectsV2 page'),
    ec2: z
      .strictObject({
        endpoint: z.url({
          protocol: /^https?$/,
          error: 'must be the URL of the Nimbus EC2 Query frontend, e.g. https://nimbus.example.org:8444/',
        }),
        signatureVersion: z
          .enum(['v2', 'v4'])
          .default('v2')
          .describe(
            'Query signature: v2 is what Nimbus checks (QueryAuthenticationFilter); ' +
              'v4 for a frontend behind something else',
          ),
        signatureMethod: z
          .enum(['HmacSHA256', 'HmacSHA1'])
          .default('HmacSHA256')
          .describe('SigV2 HMAC (Nimbus takes both)'),
        apiVersion: z
          .string()
          .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be an EC2 API version such as 2009-08-15')
          .default('2009-08-15')
          .describe('the only version Nimbus maps'),
        region: z.string().min(1).default('nimbus').describe('signing region (SigV4 only)'),
        caBundle: z
          .string()
          .min(1)
          .optional()
          .describe(
            "PEM file of the CA of the frontend's (often self-signed) certificate, relative to the data directory",
          ),
      })
      .optional()
      .describe('the EC2 Query frontend (port 8444): list and get also ask DescribeImages which images Nimbus offers'),
    timeouts: z
      .strictObject({
        request: seconds(3600).default(60).describe('seconds one metadata request (list, head, copy, delete) may take'),
        transfer: ignoredSeconds(),
      })
      .default({ request: 60 }),
  })
  .refine((o) => o.canonicalId !== o.commonFolder, { message: 'must differ from commonFolder', path: ['canonicalId'] });
export type NimbusOptions = z.infer<typeof nimbusOptionsSchema>;

export const nimbusPlugin = definePlugin({
  id: 'nimbus',
  kind: 'iaas',
  description: 'Nimbus: images in the Cumulus (S3) repository, Repo/VMS/<canonical-id>/<name> and VMS/common/<name>',
  optionsSchema: nimbusOptionsSchema,
  create: async (options, context) => {
    context.secrets.add(options.secretAccessKey);
    const pem = { option: 'ec2.caBundle', cloud: context.name, dataDir: context.dataDir, certificate: true };
    const caBundle = options.ec2?.caBundle !== undefined ? await loadPem(options.ec2.caBundle, pem) : undefined;
    const logger = context.logger.child({ adapter: 'nimbus', cloud: context.name });
    warnIgnoredTimeout(logger, context.name, 'transfer', options.timeouts.transfer);
    const { NimbusDriver } = await import('./driver.js');
    return new NimbusDriver({
      endpoint: options.endpoint,
      region: options.region,
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      canonicalId: options.canonicalId,
      bucket: options.bucket,
      prefix: options.prefix,
      commonFolder: options.commonFolder,
      compress: options.compress,
      partSize: options.partSize,
      concurrency: options.concurrency,
      pageSize: options.pageSize,
      requestTimeoutMs: options.timeouts.request * 1000,
      ...(options.ec2
        ? {
            frontend: {
              endpoint: options.ec2.endpoint,
              signatureVersion: options.ec2.signatureVersion,
              signatureMethod: options.ec2.signatureMethod,
              apiVersion: options.ec2.apiVersion,
              region: options.ec2.region,
              accessKeyId: options.accessKeyId,
              secretAccessKey: options.secretAccessKey,
              ...(caBundle !== undefined ? { caBundle } : {}),
              requestTimeoutMs: options.timeouts.request * 1000,
            },
          }
        : {}),
      logger,
    });
  },
});
