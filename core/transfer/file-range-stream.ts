import type { FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { isVisorError, VisorError } from '../errors.js';

/**
 * Bytes per read. 1 MiB: large enough that the per-block JavaScript (one read, one write) is
 * noise, small enough to stay in the CPU's caches between the read and the socket write (4 MiB
 * blocks were no cheaper in CPU and slower on this class of machine; BENCHMARKS.md).
 */
export const FILE_BLOCK_SIZE = 1024 * 1024;

export interface FileRangeOptions {
  /** First byte (default 0). */
  start?: number;
  /** How many bytes, from `start`: exactly these are delivered, or the stream fails. */
  length: number;
  blockSize?: number;
}

/**
 * A byte range of an open file, read in large blocks. As a Readable it hands out a fresh buffer
 * per block (a consumer may keep it). `sendTo` is the fast way to a socket: two buffers, reused —
 * one is read into while the other is being written — so a download allocates nothing per
 * block and runs no stream machinery per chunk; allocating a buffer per 64 KiB chunk kept V8
 * collecting garbage for the external memory it held (BENCHMARKS.md, Download).
 *
 * Exactly `length` bytes, whatever happens to the file meanwhile: a file that ends early fails
 * the stream (the receiver sees a short body and a closed connection, never a wrong one).
 * The file handle is closed when the stream ends, fails or is destroyed.
 */
export class FileRangeStream extends Readable {
  readonly #handle: FileHandle;
  readonly #block: number;
  #position: number;
  #remaining: number;
  #consumed = false;

  constructor(handle: FileHandle, options: FileRangeOptions) {
    const block = options.blockSize ?? FILE_BLOCK_SIZE;
    super({ highWaterMark: block });
    this.#handle = handle;
    this.#block = block;
    this.#position = options.start ?? 0;
    this.#remaining = options.length;
  }

  override _read(): void {
    this.#consumed = true;
    if (this.#remaining === 0) {
      this.push(null);
      return;
    }
    const want = Math.min(this.#block, this.#remaining);
    const buffer = Buffer.allocUnsafe(want);
    this.#handle.read(buffer, 0, want, this.#position).then(
      ({ bytesRead }) => {
        if (this.destroyed) return;
        if (bytesRead === 0) {
          this.destroy(this.#shortError());
          return;
        }
        this.#position += bytesRead;
        this.#remaining -= bytesRead;
        this.push(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
      },
      (error: unknown) => this.destroy(readError(error)),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // close() waits for a read in flight; closing twice is harmless.
    this.#handle.close().then(
      () => callback(error),
      () => callback(error),
    );
  }

  /**
   * Writes the range to `destination` (which is not ended) in blocks read into two reused
   * buffers, waiting for each write to be handed to the kernel before its buffer is read into
   * again. Resolves when the last byte is written; rejects when the file fails or ends early, or
   * when the destination fails or closes first. Either way the stream is finished afterwards.
   * With `end`, the destination is ended once the last byte is written, before the file is closed:
   * on a busy server the close is a turn of the event loop the receiver need not wait for.
   */
  async sendTo(destination: Writable, options: { end?: boolean } = {}): Promise<void> {
    if (this.#consumed) throw new VisorError('internal', 'this file range is being read already');
    this.#consumed = true;
    const gone = closedEarly(destination);
    const first = Math.min(this.#block, this.#remaining);
    const second = this.#remaining > first ? Buffer.allocUnsafeSlow(first) : undefined;
    const buffers = [Buffer.allocUnsafeSlow(first), second];
    let pending: Promise<void> | undefined;
    try {
      for (let i = 0; this.#remaining > 0; i ^= 1) {
        const buffer = buffers[i]!;
        const want = Math.min(buffer.length, this.#remaining);
        const { bytesRead } = await this.#handle.read(buffer, 0, want, this.#position).catch((error: unknown) => {
          throw readError(error);
        });
        if (bytesRead === 0) throw this.#shortError();
        this.#position += bytesRead;
        this.#remaining -= bytesRead;
        // The other buffer's write must be done before that buffer is read into (next turn).
        if (pending) await Promise.race([pending, gone.promise]);
        pending = writeBlock(destination, bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      }
      if (pending) await Promise.race([pending, gone.promise]);
      if (options.end) destination.end();
    } finally {
      gone.dispose();
      // Closed before the promise settles, so that a caller sees no handle left open. The error,
      // if any, goes to the caller through the promise, not as an 'error' event nobody awaits.
      await this.#handle.close().catch(() => undefined);
      this.destroy();
    }
  }

  #shortError(): VisorError {
    return new VisorError('integrity', `the stored file ended ${this.#remaining} bytes before its declared end`);
  }
}

function readError(error: unknown): VisorError {
  return new VisorError('unavailable', `reading the stored file failed: ${(error as Error).message}`, { cause: error });
}

/** Failures on the receiving side are marked as such: a client that went away is not the store's fault. */
export function isReceiverGone(error: unknown): boolean {
  return isVisorError(error) && error.details?.['receiverGone'] === true;
}

const receiverGone = (cause?: unknown) =>
  new VisorError('unavailable', 'the receiver closed the connection before the end', {
    cause,
    details: { receiverGone: true },
  });

function writeBlock(destination: Writable, block: Buffer): Promise<void> {
  const written = new Promise<void>((resolve, reject) => {
    if (destination.destroyed) {
      reject(receiverGone());
      return;
    }
    try {
      destination.write(block, (error) => (error ? reject(receiverGone(error)) : resolve()));
    } catch (error) {
      // Refused by the destination itself (a response held to its Content-Length): our fault,
      // not the receiver's.
      reject(
        new VisorError('internal', `the block could not be written: ${(error as Error).message}`, { cause: error }),
      );
    }
  });
  // Awaited later (or not at all, when the file fails first): never an unhandled rejection.
  written.catch(() => undefined);
  return written;
}

/** Rejects when the destination closes (or fails) before the range is written: the receiver went away. */
function closedEarly(destination: Writable): { promise: Promise<never>; dispose(): void } {
  let onClose = (): void => undefined;
  let onError = (_error: Error): void => undefined;
  const promise = new Promise<never>((_resolve, reject) => {
    onClose = () => reject(receiverGone());
    onError = (error) => reject(receiverGone(error));
    if (destination.destroyed) onClose();
    destination.once('close', onClose);
    destination.once('error', onError);
  });
  promise.catch(() => undefined);
  return {
    promise,
    dispose: () => {
      destination.off('close', onClose);
      destination.off('error', onError);
    },
  };
}
