import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { VisorError } from '../errors.js';
import { checksumAlgorithms, type Checksums } from '../image/model.js';

/**
 * A pass-through stream that counts bytes and computes md5, sha256 and sha512 of everything
 * that flows through it: the one read of each byte serves the write and all three checksums.
 */
export class DigestStream extends Transform {
  readonly #hashes: Hash[] = checksumAlgorithms.map((a) => createHash(a));
  #size = 0;
  #result: { size: number; checksums: Required<Checksums> } | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    for (const h of this.#hashes) h.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const [md5, sha256, sha512] = this.#hashes.map((h) => h.digest('hex')) as [string, string, string];
    this.#result = { size: this.#size, checksums: { md5, sha256, sha512 } };
    callback();
  }

  get bytes(): number {
    return this.#size;
  }

  /** Size and checksums; only once the stream has ended. */
  result(): { size: number; checksums: Required<Checksums> } {
    if (!this.#result) throw new VisorError('internal', 'digest read before the stream ended');
    return this.#result;
  }
}

/** Compares what was received with what the caller declared; names every mismatch. */
export function verifyDigest(
  actual: { size: number; checksums: Checksums },
  expected: { size?: number | undefined; checksums?: Checksums | undefined },
): void {
  const problems: string[] = [];
  if (expected.size !== undefined && expected.size !== actual.size)
    problems.push(`size is ${actual.size} bytes, expected ${expected.size}`);
  for (const algorithm of checksumAlgorithms) {
    const want = expected.checksums?.[algorithm];
    const got = actual.checksums[algorithm];
    if (want !== undefined && got !== undefined && want.toLowerCase() !== got)
      problems.push(`${algorithm} is ${got}, expected ${want.toLowerCase()}`);
  }
  if (problems.length > 0)
    throw new VisorError('integrity', `content does not match: ${problems.join('; ')}`, {
      details: { actual, expected },
    });
}

/** The three digests of a put that computed them all (the default); a store that did not is a bug. */
export function allChecksums(checksums: Checksums, what: string): Required<Checksums> {
  const { md5, sha256, sha512 } = checksums;
  if (!md5 || !sha256 || !sha512) throw new VisorError('internal', `${what}: the store did not compute every digest`);
  return { md5, sha256, sha512 };
}
