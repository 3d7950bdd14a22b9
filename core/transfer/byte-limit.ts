import { Transform, type TransformCallback } from 'node:stream';
import type { VisorError } from '../errors.js';

/**
 * Passes bytes through until `check` objects: it sees each chunk's length and the total so far
 * (with the chunk) before the chunk goes on, so the bytes over a limit never reach the writer.
 * The stream then fails with check's error and the writer keeps nothing.
 */
export class ByteLimit extends Transform {
  readonly #check: (total: number, chunk: number) => VisorError | undefined;
  #total = 0;

  constructor(check: (total: number, chunk: number) => VisorError | undefined) {
    super();
    this.#check = check;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#total += chunk.length;
    callback(this.#check(this.#total, chunk.length) ?? null, chunk);
  }
}
