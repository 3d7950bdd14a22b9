import { z } from 'zod';

/**
 * What the adapter reads from Cumulus (an S3 look-alike) and from its own object metadata.
 * The SDK parses XML and headers but leaves every field optional; a reply that lacks what the
 * adapter relies on is an `invalidResponse` (see `parseOutput` in core/wire/s3/schema.ts),
 * never a silent default.
 */

const etag = z.string().min(1);

/** One entry of a ListObjectsV2 page. Cumulus and Swift both send Key, Size, ETag, LastModified. */
export const listedObject = z.object({
  Key: z.string().min(1),
  Size: z.number().int().nonnegative(),
  ETag: etag.optional(),
  LastModified: z.date().optional(),
});
export type ListedObject = z.infer<typeof listedObject>;

export const listObjectsOutput = z
  .object({
    Contents: z.array(listedObject).optional(),
    IsTruncated: z.boolean().optional(),
    NextContinuationToken: z.string().min(1).optional(),
  })
  .refine((page) => page.IsTruncated !== true || page.NextContinuationToken !== undefined, {
    message: 'a truncated page must carry NextContinuationToken',
    path: ['NextContinuationToken'],
  });

export const headObjectOutput = z.object({
  ContentLength: z.number().int().nonnegative(),
  ETag: etag.optional(),
  LastModified: z.date().optional(),
  ContentType: z.string().optional(),
  /** x-amz-meta-* headers, prefix stripped and names lower-cased by the SDK. */
  Metadata: z.record(z.string(), z.string()).optional(),
  ServerSideEncryption: z.string().optional(),
  SSECustomerAlgorithm: z.string().optional(),
});
export type HeadObjectOutput = z.infer<typeof headObjectOutput>;

export const copyObjectOutput = z.object({
  CopyObjectResult: z.object({ ETag: etag.optional(), LastModified: z.date().optional() }).optional(),
});

export const uploadPartCopyOutput = z.object({
  CopyPartResult: z.object({ ETag: etag }),
});

/** Decoded JSON metadata values (visor-tags, visor-properties): written by visor, read back strictly. */
export const tagsValue = z.array(z.string());
export const propertiesValue = z.record(z.string(), z.string());
