import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { isVisorError, VisorError } from '../../core/errors.js';

/**
 * The last stream of a download pipeline. `pipeline` destroys every stream with the first error
 * (a broken connection, a corrupt gzip member); this one hands its reader that error as a
 * VisorError of the right kind instead of a raw socket or zlib error.
 */
export class DownloadTail extends Transform {
  protected readonly what: string;

  constructor(what: string) {
    super();
    this.what = what;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    callback(null, chunk);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    callback(error === null ? null : downloadError(error, this.what));
  }
}

function downloadError(error: Error, what: string): VisorError {
  if (isVisorError(error)) return error;
  const code = (error as { code?: unknown }).code;
  // zlib: a damaged or truncated gzip stream.
  if (typeof code === 'string' && code.startsWith('Z_'))
    return new VisorError('integrity', `${what}: the stored gzip data is damaged (${error.message})`, { cause: error });
  return new VisorError('unavailable', `${what}: ${error.message}`, { cause: error });
}

/**
 * Passes bytes through and, at the end, checks their count and sha256 against what visor
 * recorded at upload: a download that does not match fails with `integrity` instead of ending
 * cleanly.
 */
export class VerifyingStream extends DownloadTail {
  readonly #expected: { size: number; sha256: string };
  readonly #hash: Hash = createHash('sha256');
  #size = 0;

  constructor(expected: { size: number; sha256: string }, what: string) {
    super(what);
    this.#expected = expected;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    if (this.#size > this.#expected.size) {
      callback(
        new VisorError('integrity', `${this.what}: more than the ${this.#expected.size} bytes recorded at upload`),
      );
      return;
    }
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const sha256 = this.#hash.digest('hex');
    if (this.#size !== this.#expected.size)
      callback(
        new VisorError('integrity', `${this.what}: ${this.#size} bytes, ${this.#expected.size} recorded at upload`),
      );
    else if (sha256 !== this.#expected.sha256)
      callback(
        new VisorError('integrity', `${this.what}: sha256 is ${sha256}, ${this.#expected.sha256} recorded at upload`),
      );
    else callback();
  }
}

/**
 * Keeps bytes `start`..`end` (inclusive) of a stream: ranges of a gzip object are ranges of the
 * image, so they are cut after decompression. What follows the range is read and dropped.
 */
export class ByteSlice extends DownloadTail {
  readonly #start: number;
  readonly #end: number;
  #position = 0;

  constructor(range: { start: number; end: number }, what: string) {
    super(what);
    this.#start = range.start;
    this.#end = range.end;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const from = Math.max(0, this.#start - this.#position);
    const to = Math.min(chunk.length, this.#end + 1 - this.#position);
    this.#position += chunk.length;
    callback(null, to > from ? chunk.subarray(from, to) : undefined);
  }
}
