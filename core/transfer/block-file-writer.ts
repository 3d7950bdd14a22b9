import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { VisorError } from '../errors.js';
import type { ChecksumAlgorithm, Checksums } from '../image/model.js';
import { OffThreadDigest } from './off-thread-sha256.js';

/**
 * Bytes per write. 4 MiB: 256 writes per GiB instead of one per 64 KiB socket chunk (16,384),
 * each a round trip through libuv's thread pool; larger blocks buy nothing more.
 */
export const WRITE_BLOCK_SIZE = 4 * 1024 * 1024;
/** Blocks per stream: one being filled while the others are written. */
const BLOCKS_PER_STREAM = 3;
/**
 * Blocks of the standard size in use or spare, for all streams of the process together: memory
 * must not grow with the number of uploads (300 stalled uploads once held 2 MiB each in
 * half-filled blocks). A stream that finds none writes its chunks as they come (no copy), and a
 * stream that goes quiet writes out its half-filled block and hands its blocks back.
 */
const MAX_BLOCKS = 16;
/** Spare blocks kept for the next streams. */
const spare: Buffer[] = [];
let outstanding = 0;
/** A stream with no new bytes for this long writes out its partial block and returns its blocks. */
const IDLE_MS = 250;

/** Blocks live in shared memory: a hashing thread reads them in place, without a copy. */
const sharedBlock = (size: number): Buffer => Buffer.from(new SharedArrayBuffer(size));
const takeBlock = (size: number): Buffer | undefined => {
  if (size !== WRITE_BLOCK_SIZE) return sharedBlock(size);
  const block = spare.pop() ?? (outstanding + spare.length < MAX_BLOCKS ? sharedBlock(size) : undefined);
  if (block) outstanding++;
  return block;
};
/** Standard-size blocks held by streams and kept spare (for tests and diagnostics). */
export function blockPoolUse(): { inUse: number; spare: number; max: number } {
  return { inUse: outstanding, spare: spare.length, max: MAX_BLOCKS };
}

const giveBack = (block: Buffer): void => {
  if (block.length !== WRITE_BLOCK_SIZE) return;
  outstanding--;
  spare.push(block);
};

export interface BlockWriteOptions {
  /**
   * Digests computed on the way: on a hashing thread beside the receiving and writing (one sha256
   * costs ~0.6 CPU-s per GiB), or here for an upload that fits in its first block.
   */
  algorithms: readonly ChecksumAlgorithm[];
  signal?: AbortSignal;
  blockSize?: number;
  /**
   * Starts writing the file's pages to disk (fdatasync, in the background, one at a time) each
   * time this many more bytes are written, so the disk works while the rest of the upload arrives
   * and the caller's closing fsync finds little left to flush. Without it, a GiB upload waited
   * ~0.5 s at its end for the disk (BENCHMARKS.md, Ingest). Unset: nothing is synced here.
   */
  syncEvery?: number;
}

/** Bytes on their way to the file: written, and hashed off-thread unless hashed at once. */
interface Piece {
  /** The block the bytes are in, handed back once they are written and hashed; none for a chunk written as it is. */
  block: Buffer | undefined;
  bytes: Buffer;
  at: number;
  /** The write and, when on a thread, the hash update still to settle. */
  waits: number;
}

/**
 * Writes `source` into `handle` from position 0 in large blocks. The stream's chunks (64 KiB
 * off a socket) are copied once into a few reused buffers of shared memory; each full buffer is
 * handed to the kernel in one write and, at the same time, to a hashing thread that reads it in
 * place, while the next fills; a buffer is reused once both are done with it. So a GiB costs a
 * few hundred writes, no allocation per chunk, no stream machinery after the source, and the
 * digests cost this thread no time. Resolves with the size and digests (of exactly the bytes
 * written, in order) once every byte is written (not synced: the caller decides); rejects when
 * the source fails, the signal aborts, a write fails or the hashing thread fails — in every case
 * only after the writes and hash updates in flight have settled, so the caller may close and
 * remove the file at once.
 */
export function writeInBlocks(
  source: Readable,
  handle: FileHandle,
  options: BlockWriteOptions,
): Promise<{ size: number; checksums: Checksums }> {
  const blockSize = options.blockSize ?? WRITE_BLOCK_SIZE;
  const algorithms = options.algorithms;
  // Where the digests are computed is decided by the first bytes to hash (see `hashOf`).
  let inline: [ChecksumAlgorithm, Hash][] | undefined;
  let thread: OffThreadDigest | undefined;
  const free: Buffer[] = [];
  let owned = 0;
  let lastData = Date.now();
  let pausedForQueue = false;
  let block: Buffer | undefined;
  let fill = 0;
  let position = 0;
  /** Pieces whose write or hash update has not settled yet. */
  let unsettled = 0;
  let failure: Error | undefined;
  let ended = false;
  let finished = false;
  /** Bytes handed to the kernel, and how many of them the last early sync started from. */
  let written = 0;
  let syncedFrom = 0;
  let syncing = false;
  /** Bytes that found no free block (the source is paused meanwhile): taken up when a block comes back. */
  const held: { chunk: Buffer; from: number }[] = [];

  return new Promise((resolve, reject) => {
    const hashHere = () => {
      inline ??= algorithms.map((a) => [a, createHash(a)]);
      return inline;
    };
    /**
     * Hashes `bytes`, in order: the promise of the thread's update, or nothing when hashed here.
     * An upload whose first bytes are its whole (a 4 KiB upload) is hashed here: a thread round
     * trip would cost more than the hash. So is one whose first bytes are not in shared memory
     * (no block was free: every core is busy with other uploads, the cheapest CPU-wise wins).
     * Any other upload is hashed on a thread; a later chunk outside shared memory is copied there.
     */
    const hashOf = (bytes: Buffer, whole: boolean): Promise<void> | undefined => {
      if (algorithms.length === 0) return undefined;
      if (!inline && !thread) {
        if (whole || !(bytes.buffer instanceof SharedArrayBuffer)) hashHere();
        else thread = new OffThreadDigest(algorithms);
      }
      if (thread) return thread.update(bytes);
      for (const [, hash] of inline!) hash.update(bytes);
      return undefined;
    };
    const finish = () => {
      if (finished || unsettled > 0) return;
      finished = true;
      cleanup();
      for (const b of free) giveBack(b);
      free.length = 0;
      owned = 0;
      if (block) giveBack(block);
      block = undefined;
      const digest = thread;
      if (failure) {
        digest?.close();
        reject(failure);
      } else if (digest) {
        digest.digest().then(
          (checksums) => {
            digest.close();
            resolve({ size: position, checksums });
          },
          (error: unknown) => {
            digest.close();
            reject(error);
          },
        );
      } else {
        const checksums: Checksums = {};
        for (const [algorithm, hash] of hashHere()) checksums[algorithm] = hash.digest('hex');
        resolve({ size: position, checksums });
      }
    };
    const fail = (error: Error) => {
      if (failure) return;
      failure = error;
      source.destroy();
      // Writes not started never will be; the one in flight and the hash updates are waited for.
      for (const piece of queue.splice(0)) settle(piece);
      finish();
    };
    /** One of the piece's waits is over; its block is free again once both are. */
    const settle = (piece: Piece) => {
      if (--piece.waits > 0) return;
      unsettled--;
      if (piece.block) free.push(piece.block);
      if (failure) return finish();
      if (held.length > 0) {
        while (held.length > 0 && takeHeld());
        if (held.length === 0) source.resume();
      }
      if (ended && held.length === 0) end();
    };
    const nextBlock = (): Buffer | undefined => {
      if (free.length > 0) return free.pop();
      if (owned < BLOCKS_PER_STREAM) {
        const taken = takeBlock(blockSize);
        if (taken) owned++;
        return taken;
      }
      return undefined;
    };
    /** Pieces waiting for their write: one at a time (see below). */
    const queue: Piece[] = [];
    const enqueue = (full: Buffer | undefined, bytes: Buffer, whole: boolean) => {
      const piece: Piece = { block: full, bytes, at: position, waits: 1 };
      position += bytes.length;
      unsettled++;
      queue.push(piece);
      const hashed = hashOf(bytes, whole);
      if (hashed) {
        piece.waits++;
        hashed.then(
          () => settle(piece),
          (error: unknown) => {
            fail(error as Error);
            settle(piece);
          },
        );
      }
      pump();
    };
    /** A chunk written as it is, for want of a block; the source waits while many are queued. */
    const direct = (bytes: Buffer) => {
      enqueue(undefined, bytes, false);
      if (queue.length >= 16 && !pausedForQueue) {
        pausedForQueue = true;
        source.pause();
      }
    };
    let inFlight = false;
    /** The current block to the file and the hash; `whole` when it holds the entire upload. */
    const dispatch = (whole = false) => {
      const full = block!;
      const bytes = fill === full.length ? full : full.subarray(0, fill);
      block = undefined;
      fill = 0;
      enqueue(full, bytes, whole);
    };
    // One write in flight, not several: concurrent writes to one file contend for its inode lock
    // in the kernel, which spins — a second CPU burnt for nothing (BENCHMARKS.md, Ingest).
    const pump = () => {
      if (inFlight || failure || queue.length === 0) return;
      const piece = queue.shift()!;
      inFlight = true;
      writeAll(handle, piece.bytes, piece.at).then(
        () => {
          inFlight = false;
          written += piece.bytes.length;
          syncEarly();
          pump();
          if (pausedForQueue && queue.length < 4) {
            pausedForQueue = false;
            if (held.length === 0) source.resume();
          }
          settle(piece);
        },
        (error: unknown) => {
          inFlight = false;
          fail(new VisorError('unavailable', `writing the file failed: ${(error as Error).message}`, { cause: error }));
          settle(piece);
        },
      );
    };
    /**
     * An fdatasync of what is written so far, while the upload goes on; it counts as unsettled, so
     * the promise settles (and the caller may close the file) only once it has.
     */
    const syncEarly = () => {
      const every = options.syncEvery;
      if (every === undefined || syncing || failure || written - syncedFrom < every) return;
      syncing = true;
      syncedFrom = written;
      unsettled++;
      const done = () => {
        syncing = false;
        unsettled--;
        if (failure) return finish();
        if (ended && held.length === 0) end();
      };
      handle.datasync().then(done, (error: unknown) => {
        fail(new VisorError('unavailable', `flushing the file failed: ${(error as Error).message}`, { cause: error }));
        done();
      });
    };
    /** The first held chunk taken up; false when it found no free block (it stays first). */
    const takeHeld = (): boolean => {
      const { chunk, from } = held.shift()!;
      return take(chunk, from, true);
    };
    /** Copies `chunk` from `from` into blocks; holds the rest (and pauses the source) when none is free. */
    const take = (chunk: Buffer, from: number, first = false): boolean => {
      let offset = from;
      while (offset < chunk.length) {
        block ??= nextBlock();
        if (!block && owned === 0) {
          // No block to be had (every one is in use by other uploads): this chunk is written as it is.
          direct(offset === 0 ? chunk : chunk.subarray(offset));
          return true;
        }
        if (!block) {
          if (first) held.unshift({ chunk, from: offset });
          else held.push({ chunk, from: offset });
          source.pause();
          return false;
        }
        const n = chunk.copy(block, fill, offset);
        fill += n;
        offset += n;
        if (fill === block.length) dispatch();
      }
      return true;
    };
    const end = () => {
      if (failure) return;
      if (block && fill > 0) dispatch(position === 0);
      finish();
    };
    const onData = (chunk: Buffer) => {
      lastData = Date.now();
      if (failure) return;
      // Order is kept: while bytes are held, later chunks queue behind them.
      if (held.length > 0) held.push({ chunk, from: 0 });
      else take(chunk, 0);
    };
    const onEnd = () => {
      ended = true;
      if (held.length === 0) end();
    };
    const onError = (error: Error) => fail(error);
    const onClose = () => {
      if (!ended) fail(new VisorError('unavailable', 'the upload ended before its last byte'));
    };
    const onAbort = () => fail(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    // A quiet stream (a stalled client) neither keeps a half-filled block nor blocks it does not use.
    const idle = setInterval(() => {
      if (failure || ended || Date.now() - lastData < IDLE_MS) return;
      if (block && fill > 0 && held.length === 0) dispatch();
      if (block && fill === 0) {
        giveBack(block);
        block = undefined;
        owned--;
      }
      while (free.length > 0) {
        giveBack(free.pop()!);
        owned--;
      }
    }, IDLE_MS);
    idle.unref();
    const cleanup = () => {
      clearInterval(idle);
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      source.off('close', onClose);
      options.signal?.removeEventListener('abort', onAbort);
    };
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    // The source may have failed before we got here (an inspector refusing the first chunk while the
    // file was being opened): its 'error' and 'close' are gone, so waiting for them would hang.
    if (source.errored) {
      fail(source.errored);
      return;
    }
    if (source.destroyed) {
      fail(new VisorError('unavailable', 'the upload ended before its last byte'));
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    source.on('error', onError);
    source.on('end', onEnd);
    source.on('close', onClose);
    source.on('data', onData);
  });
}

async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
