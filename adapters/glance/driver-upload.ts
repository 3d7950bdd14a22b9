import { createHash } from 'node:crypto';
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import { isVisorError, VisorError } from '../../core/errors.js';
import type { ContentSource } from '../../core/iaas/port.js';
import { checksumAlgorithms } from '../../core/image/model.js';
import { verifyDigest } from '../../core/transfer/digest.js';
import { checksumsOf } from './mapper.js';
import type { GlanceImage } from './schema.js';

/** Where a verifying upload stream leaves its verdict (axios wraps stream errors in its own). */
export interface UploadVerdict {
  failure?: VisorError;
  bytes: number;
}

/**
 * Opens the content and passes it through a digest: the upload fails (and Glance never sees the
 * end of the chunked body, so it commits nothing) when the bytes exceed the declared size, or
 * when, at the end, size or sha256 differ from what the source declared. sha256 is checked here
 * because Glance cannot check it (it reports md5 and sha512) and the marker carries it; md5
 * and sha512 are checked on what Glance reports it stored.
 */
export async function openVerified(
  content: ContentSource,
  verdict: UploadVerdict,
  onProgress?: (bytes: number) => void,
): Promise<Readable> {
  const source = await content.open();
  // sha256 only: md5 and sha512 are Glance's to compute (and are checked on what it reports);
  // computing them here as well hashed every pushed byte twice over (BENCHMARKS.md).
  const sha256 = createHash('sha256');
  verdict.bytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      verdict.bytes += chunk.length;
      if (verdict.bytes > content.size) {
        verdict.failure = new VisorError(
          'integrity',
          `content does not match: more than the declared ${content.size} bytes`,
        );
        callback(verdict.failure);
        return;
      }
      sha256.update(chunk);
      onProgress?.(verdict.bytes);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      try {
        verifyDigest(
          { size: verdict.bytes, checksums: { sha256: sha256.digest('hex') } },
          { size: content.size, checksums: { sha256: content.checksums.sha256 } },
        );
        callback();
      } catch (error) {
        verdict.failure = isVisorError(error) ? error : new VisorError('integrity', String(error));
        callback(verdict.failure);
      }
    },
  });
  return pipeline(source, check, () => undefined);
}

/** Compares what Glance says it stored with what was sent: size, md5 and its multihash. */
export function verifyCloudCopy(image: GlanceImage, content: ContentSource): { verified: string[] } {
  const problems: string[] = [];
  const verified: string[] = [];
  if (typeof image.size === 'number') {
    if (image.size !== content.size) problems.push(`size is ${image.size} bytes, expected ${content.size}`);
    else verified.push('size');
  }
  const reported = checksumsOf(image);
  for (const algorithm of checksumAlgorithms) {
    const got = reported[algorithm];
    const want = content.checksums[algorithm]?.toLowerCase();
    if (got === undefined || want === undefined) continue;
    if (got !== want) problems.push(`${algorithm} is ${got}, expected ${want}`);
    else verified.push(algorithm);
  }
  if (problems.length > 0) {
    throw new VisorError(
      'integrity',
      `Glance's copy of image ${image.id} does not match the content: ${problems.join('; ')}`,
      {
        details: {
          nativeId: image.id,
          reported: { size: image.size, ...reported },
          expected: { size: content.size, ...content.checksums },
        },
      },
    );
  }
  return { verified };
}
