import { Readable } from 'node:stream';
import { z } from 'zod';
import { VisorError } from '../../errors.js';
import { checkRange } from '../../store/keys.js';
import type { ByteRange } from '../../store/port.js';

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
export function etagIsMd5(output: {
  ServerSideEncryption?: string | undefined;
  SSECustomerAlgorithm?: string | undefined;
}): boolean {
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

/**
 * The body of a GetObject answer, checked against the range asked for: exactly those bytes, or
 * the whole object where the server ignored `Range` for a range that is the whole object (some
 * do). Anything else is `invalidResponse`, and the body is destroyed.
 */
export function getObjectBody(
  output: unknown,
  range: ByteRange | undefined,
  context: string,
): { stream: Readable; size: number; range?: { start: number; end: number } } {
  const { Body: stream, ContentLength, ContentRange } = parseOutput(getObjectOutput, output, context);
  if (!range) return { stream, size: ContentLength };
  try {
    if (ContentRange === undefined) {
      const whole = checkRange(range, ContentLength);
      if (whole.start !== 0 || whole.end !== ContentLength - 1) {
        throw new VisorError('invalidResponse', `${context}: the server ignored the Range header`);
      }
      return { stream, size: ContentLength, range: whole };
    }
    const got = parseContentRange(ContentRange);
    const want = checkRange(range, got.size);
    if (got.start !== want.start || got.end !== want.end || ContentLength !== want.end - want.start + 1) {
      const asked = `asked for bytes ${want.start}-${want.end}`;
      throw new VisorError('invalidResponse', `${context}: ${asked}, got ${ContentRange} (${ContentLength} bytes)`);
    }
    return { stream, size: got.size, range: want };
  } catch (error) {
    stream.destroy();
    throw error;
  }
}
