import { z } from 'zod';
import { ignoredSeconds, loadPem, seconds, warnIgnoredTimeout } from '../../core/iaas/kit/index.js';
import { definePlugin } from '../../core/registry/plugin.js';
import { bucketPattern, refinePrefix } from '../../core/wire/s3/names.js';
import { loadBundleIdentity } from './driver-bundle-crypto.js';
import { bundleAcls } from './schema.js';

// Types only: the driver (and the AWS SDK's EC2 and S3 clients under it, ~115 MiB and ~0.7 s to
// load) is imported when a Eucalyptus cloud is configured, not by every process that registers the plugin.
export type { EucalyptusDriver, EucalyptusDriverOptions } from './driver.js';
export type { Ec2QueryClient, Ec2Connection, DescribeImagesQuery } from '../../core/wire/ec2/client.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const pem = (what: string) =>
  z.string().min(1).describe(`${what}: PEM text, or a PEM file (relative to the data directory)`);
const endpoint = (example: string) => z.url({ protocol: /^https?$/, error: `must be an http(s) URL, e.g. ${example}` });

export const eucalyptusOptionsSchema = z.strictObject({
  ec2Endpoint: endpoint('http://clc:8773/services/compute')
    .optional()
    .describe('EC2 Query endpoint with its path; omit for AWS'),
  s3Endpoint: endpoint('http://clc:8773/services/objectstorage')
    .optional()
    .describe('Walrus / Object Storage Gateway with its path (path-style); omit for AWS'),
  region: z.string().min(1).default('eucalyptus').describe('signing region of both services (AWS: the region)'),
  s3Region: z.string().min(1).optional().describe('signing region of the S3 side when it differs'),
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1).describe('use ${ENV_VAR}'),
  sessionToken: z.string().min(1).optional(),
  signatureVersion: z.enum(['v4', 'v2']).default('v4').describe('EC2 Query signature: v4, or v2 for old Eucalyptus'),
  signatureMethod: z.enum(['HmacSHA256', 'HmacSHA1']).default('HmacSHA256').describe('v2 only'),
  apiVersion: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be an EC2 API version such as 2010-08-31')
    .optional()
    .describe("EC2 Version parameter; default: the SDK's"),
  caBundle: pem('extra CAs to trust for https endpoints').optional(),
  accountId: z
    .string()
    .regex(/^\d{12}$/, 'must be the 12-digit account id (euca-describe-accounts, or the AWS account number)'),
  bucket: z
    .string()
    .regex(bucketPattern, 'must be a bucket name (3-255 letters, digits, ".", "_", "-")')
    .describe('where bundles go'),
  prefix: z.string().default('').superRefine(refinePrefix).describe('key prefix of bundles, e.g. "bundles/"'),
  acl: z
    .enum(bundleAcls)
    .default('aws-exec-read')
    .describe('canned ACL of bundle objects (euca2ools: aws-exec-read); none sends no ACL'),
  createBucket: z.boolean().default(true).describe('create the bucket on the first upload when it is missing'),
  userCertificate: pem("the user's X.509 certificate"),
  userPrivateKey: pem("the user's RSA private key (signs manifests, decrypts downloads)"),
  cloudCertificate: pem("the cloud's X.509 certificate (cloud-cert.pem)"),
  partSize: z
    .number()
    .int()
    .min(64 * KiB, 'must be at least 64 KiB')
    .max(5 * 1024 * MiB, 'must be at most 5 GiB (one PutObject)')
    .default(10 * MiB)
    .describe('bytes per bundle part (euca2ools: 10 MiB)'),
  concurrency: z.number().int().min(1).max(32).default(4).describe('parts in memory and in flight at once'),
  gzipLevel: z
    .number()
    .int()
    .min(0)
    .max(9)
    .default(6)
    .describe("gzip level of the bundle (gzip's default: 6; 0 stores, fastest for incompressible images)"),
  keepPartsForRetry: z
    .boolean()
    .default(true)
    .describe('after a retryable failure, keep the parts sent so far for the retry'),
  timeouts: z
    .strictObject({
      request: seconds(3600).default(60).describe('seconds one EC2 request may stay silent'),
      available: ignoredSeconds(),
    })
    .default({ request: 60 }),
  pollInterval: seconds(600).default(5).describe('seconds between state checks while waiting'),
  maxAttempts: z
    .number()
    .int()
    .min(1)
    .max(10)
    .default(3)
    .describe('attempts per request (throttling and 5xx are retried)'),
  tagsSupported: z
    .union([z.literal('auto'), z.boolean()])
    .default('auto')
    .describe('auto: detected; false: markers in the Description'),
  maxTags: z.number().int().min(6).max(50).default(50).describe('tags per image the cloud keeps (10 on old clouds)'),
  pageSize: z
    .number()
    .int()
    .min(5)
    .max(1000)
    .optional()
    .describe('DescribeImages and DescribeInstances MaxResults (AWS); unset for Eucalyptus'),
  detectInUse: z
    .boolean()
    .default(true)
    .describe('ask DescribeInstances which images instances use (deletions of those are deferred)'),
  kernelId: z
    .string()
    .regex(/^[ae]ki-[0-9a-f]{8,17}$/, 'must be a kernel image id (eki-… or aki-…)')
    .optional()
    .describe('kernel of ami (paravirtual) images'),
  ramdiskId: z
    .string()
    .regex(/^[ae]ri-[0-9a-f]{8,17}$/, 'must be a ramdisk image id (eri-… or ari-…)')
    .optional()
    .describe('ramdisk of ami (paravirtual) images'),
});
export type EucalyptusOptions = z.infer<typeof eucalyptusOptionsSchema>;

export const eucalyptusPlugin = definePlugin({
  id: 'eucalyptus',
  kind: 'iaas',
  description:
    'Eucalyptus and AWS-compatible EC2: images bundled (EC2 AMI bundle) ' +
    'into Walrus/S3 and registered over the EC2 Query API',
  optionsSchema: eucalyptusOptionsSchema,
  create: async (options, context) => {
    context.secrets.add(options.secretAccessKey);
    context.secrets.add(options.sessionToken);
    // Inline PEM text, or a file relative to the data directory.
    const pem = (value: string, option: string) =>
      loadPem(value, { option, cloud: context.name, dataDir: context.dataDir, inline: true });
    const userPrivateKey = await pem(options.userPrivateKey, 'userPrivateKey');
    context.secrets.add(userPrivateKey);
    const identity = loadBundleIdentity({
      userCertificate: await pem(options.userCertificate, 'userCertificate'),
      userPrivateKey,
      cloudCertificate: await pem(options.cloudCertificate, 'cloudCertificate'),
    });
    const caBundle = options.caBundle !== undefined ? await pem(options.caBundle, 'caBundle') : undefined;
    const logger = context.logger.child({ adapter: 'eucalyptus', cloud: context.name });
    warnIgnoredTimeout(logger, context.name, 'available', options.timeouts.available);
    const credentials = {
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken !== undefined ? { sessionToken: options.sessionToken } : {}),
    };
    const { EucalyptusDriver } = await import('./driver.js');
    return new EucalyptusDriver({
      ec2: {
        endpoint: options.ec2Endpoint,
        region: options.region,
        ...credentials,
        signatureVersion: options.signatureVersion,
        signatureMethod: options.signatureMethod,
        apiVersion: options.apiVersion,
        caBundle,
        requestTimeoutMs: options.timeouts.request * 1000,
        maxAttempts: options.maxAttempts,
      },
      s3: {
        ...(options.s3Endpoint !== undefined ? { endpoint: options.s3Endpoint } : {}),
        region: options.s3Region ?? options.region,
        forcePathStyle: options.s3Endpoint !== undefined,
        ...credentials,
        maxAttempts: options.maxAttempts,
      },
      bucket: options.bucket,
      prefix: options.prefix,
      acl: options.acl,
      createBucket: options.createBucket,
      accountId: options.accountId,
      identity,
      partSize: options.partSize,
      concurrency: options.concurrency,
      gzipLevel: options.gzipLevel,
      keepPartsForRetry: options.keepPartsForRetry,
      tagsSupported: options.tagsSupported,
      maxTags: options.maxTags,
      pageSize: options.pageSize,
      detectInUse: options.detectInUse,
      kernelId: options.kernelId,
      ramdiskId: options.ramdiskId,
      pollIntervalMs: options.pollInterval * 1000,
      logger,
    });
  },
});
