import { Readable } from 'node:stream';
import { z } from 'zod';
import { VisorError } from '../../errors.js';

/**
 * The parts of S3 responses the store relies on. The SDK parses the XML and headers but leaves
 * every field optional; a service that omits one we need is an invalidResponse, never a silent
 * default.
 */
const etag = z.string().min(1);
const encryption = { ServerSideEncryption: z.string().optional(), SSECustomerAlgorithm: z.string().optional() };

export const headObjectOutput = z.object({
  ContentLength: z.number().int().nonnegative(),
  ETag: etag.optional(),
  ContentType: z.string().optional(),
  LastModified: z.date().optional(),
  ...encryption,
});

export const getObjectOutput = z.object({
  Body: z.custom<Readable>((body) => body instanceof Readable, 'must be a readable stream'),
  ContentLength: z.number().int().nonnegative(),
  ContentRange: z
    .string()
    .regex(/^bytes \d+-\d+\/\d+$/, 'must be "bytes <start>-<end>/<size>"')
    .optional(),
});

export const putObjectOutput = z.object({ ETag: etag.optional(), ...encryption });
export const createMultipartUploadOutput = z.object({ UploadId: z.string().min(1) });
export const uploadPartOutput = z.object({ ETag: etag, ...encryption });
export const completeMultipartUploadOutput = z.object({ ETag: etag.optional(), ...encryption });

/** Validates an SDK output against `schema`; `context` names the call in the error. */
export function parseOutput<T>(schema: z.ZodType<T>, output: unknown, context: string): T {
  const parsed = schema.safeParse(output);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'response'}: ${i.message}`).join('; ');
  throw new VisorError('invalidResponse', `${context}: unexpected response (${problems})`);
}

/**
 * Whether an ETag is the MD5 of the bytes: true for plain and SSE-S3 objects, false under
 * SSE-KMS and SSE-C, where S3 makes it something else.
 */
export function etagIsMd5(output: { ServerSideEncryption?: string | undefined; SSECustomerAlgorithm?: string | undefined }): boolean {
  return output.SSECustomerAlgorithm === undefined && !(output.ServerSideEncryption ?? '').startsWith('aws:kms');
}

/** An ETag without quotes, lower-case: `"ABC"` and `abc` name the same content. */
export function normalizeEtag(value: string): string {
  return value.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
}

/** `bytes 10-19/100` -> its three numbers. */
export function parseContentRange(value: string): { start: number; end: number; size: number } {
  const [, start, end, size] = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value) ?? [];
  return { start: Number(start), end: Number(end), size: Number(size) };
}
