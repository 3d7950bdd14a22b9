import { Transform, type TransformCallback } from 'node:stream';
import { VisorError } from '../errors.js';

/**
 * Passes on exactly `length` bytes and fails otherwise: more bytes than declared (which on an
 * HTTP connection would become a second, forged response after the declared body) or fewer
 * (a body cut short) end the stream with an error instead of being passed on. Whoever sends
 * the stream with a Content-Length wraps it in this, so the length said is the length sent.
 */
export class ExactLength extends Transform {
  readonly #length: number;
  readonly #what: string;
  #seen = 0;

  constructor(length: number, what: string) {
    super();
    this.#length = length;
    this.#what = what;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#length) {
      callback(new VisorError('invalidResponse', `${this.#what} sent more than the ${this.#length} bytes it declared`));
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#seen < this.#length) {
      callback(
        new VisorError(
          'invalidResponse',
          `${this.#what} ended after ${this.#seen} of the ${this.#length} bytes it declared`,
        ),
      );
      return;
    }
    callback();
  }
}
