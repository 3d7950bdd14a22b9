import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { VisorError } from '../../core/errors.js';
import { OffThreadSha256 } from '../../core/transfer/off-thread-sha256.js';

/** Bytes per read and per chunk sent: 256 of each per GiB instead of 16,384 stream chunks. */
const BLOCK_SIZE = 4 * 1024 * 1024;
/** Blocks in rotation: one being read while the others are hashed and sent. */
const BLOCKS = 3;

/** An upload body read from an open file (`size` bytes from its start). */
export interface FileBody {
  file: FileHandle;
  size: number;
  onProgress?: (bytes: number) => void;
  /** Stops the upload: the connection is closed at once. */
  signal?: AbortSignal;
}

/**
 * Writes `body` into `destination` (a request, not ended) and returns the sha256 of what was
 * sent. The file is read in 4 MiB blocks into a few reused buffers of shared memory; each block
 * is handed at once to the socket and to a hashing thread (which reads it in place, no copy),
 * and its buffer is read into again once both are done with it. So the client spends no CPU per
 * stream chunk, and the digest costs no time on the sending thread. `stop` is polled between
 * blocks (an early answer, an abort): what was sent so far is abandoned.
 */
export async function sendFileBody(
  destination: Writable,
  body: FileBody,
  stop: () => Error | undefined,
): Promise<string> {
  body.signal?.throwIfAborted();
  const hash = new OffThreadSha256();
  const busy: Promise<void>[] = [];
  // A write that never completes (a stalled server) must not hold an abort up: the connection goes.
  const onAbort = () => destination.destroy(body.signal?.reason as Error);
  body.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const first = Math.min(BLOCK_SIZE, Math.max(body.size, 1));
    const buffers = Array.from({ length: body.size > first ? BLOCKS : 1 }, () =>
      Buffer.from(new SharedArrayBuffer(first)),
    );
    let position = 0;
    for (let i = 0; position < body.size; i = (i + 1) % buffers.length) {
      await busy[i];
      body.signal?.throwIfAborted();
      const stopped = stop();
      if (stopped) throw stopped;
      const buffer = buffers[i]!;
      const want = Math.min(buffer.length, body.size - position);
      const { bytesRead } = await body.file.read(buffer, 0, want, position);
      if (bytesRead === 0) {
        throw new VisorError(
          'invalidInput',
          `the file shrank while it was being sent (${position} of ${body.size} bytes were there)`,
        );
      }
      const block = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      position += bytesRead;
      busy[i] = Promise.all([hash.update(block), writeBlock(destination, block)]).then(() => undefined);
      // Awaited before the buffer is reused, or below; a failure must not go unhandled meanwhile.
      busy[i]!.catch(() => undefined);
      body.onProgress?.(position);
    }
    await Promise.all(busy);
    return await hash.digest();
  } finally {
    body.signal?.removeEventListener('abort', onAbort);
    await Promise.allSettled(busy);
    await hash.close();
  }
}

function writeBlock(destination: Writable, block: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (destination.destroyed) {
      reject(new VisorError('unavailable', 'the connection closed before the upload was sent'));
      return;
    }
    const onClose = () => reject(new VisorError('unavailable', 'the connection closed before the upload was sent'));
    destination.once('close', onClose);
    destination.write(block, (error) => {
      destination.off('close', onClose);
      if (error) reject(new VisorError('unavailable', `sending the upload failed: ${error.message}`, { cause: error }));
      else resolve();
    });
  });
}
