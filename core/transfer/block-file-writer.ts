import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { VisorError } from '../errors.js';
import type { ChecksumAlgorithm, Checksums } from '../image/model.js';

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
/** Spare blocks kept for the next streams (plain memory, not shared with any thread). */
const spare: Buffer[] = [];
let outstanding = 0;
/** A stream with no new bytes for this long writes out its partial block and returns its blocks. */
const IDLE_MS = 250;

const takeBlock = (size: number): Buffer | undefined => {
  if (size !== WRITE_BLOCK_SIZE) return Buffer.allocUnsafeSlow(size);
  const block = spare.pop() ?? (outstanding + spare.length < MAX_BLOCKS ? Buffer.allocUnsafeSlow(size) : undefined);
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
  /** Digests computed on the way, on this thread (one sha256 costs ~0.6 CPU-s per GiB). */
  algorithms: readonly ChecksumAlgorithm[];
  signal?: AbortSignal;
  blockSize?: number;
}

/**
 * Writes `source` into `handle` from position 0 in large blocks. The stream's chunks (64 KiB
 * off a socket) are copied once into a few reused buffers; each full buffer is hashed and
 * handed to the kernel in one write while the next fills, so a GiB costs a few hundred writes,
 * no allocation per chunk and no stream machinery after the source. Resolves with the size and
 * digests once every byte is written (not synced: the caller decides); rejects when the source
 * fails, the signal aborts or a write fails — in every case only after the writes in flight
 * have settled, so the caller may close and remove the file at once.
 */
export function writeInBlocks(
  source: Readable,
  handle: FileHandle,
  options: BlockWriteOptions,
): Promise<{ size: number; checksums: Checksums }> {
  const blockSize = options.blockSize ?? WRITE_BLOCK_SIZE;
  const hashes: [ChecksumAlgorithm, Hash][] = options.algorithms.map((a) => [a, createHash(a)]);
  const free: Buffer[] = [];
  let owned = 0;
  let lastData = Date.now();
  let pausedForQueue = false;
  let block: Buffer | undefined;
  let fill = 0;
  let position = 0;
  let writing = 0;
  let failure: Error | undefined;
  let ended = false;
  /** Bytes that found no free block (the source is paused meanwhile): taken up when a write completes. */
  const held: { chunk: Buffer; from: number }[] = [];

  return new Promise((resolve, reject) => {
    const finish = () => {
      if (writing > 0) return;
      cleanup();
      for (const b of free) giveBack(b);
      free.length = 0;
      owned = 0;
      if (block) giveBack(block);
      block = undefined;
      if (failure) reject(failure);
      else {
        const checksums: Checksums = {};
        for (const [algorithm, hash] of hashes) checksums[algorithm] = hash.digest('hex');
        resolve({ size: position, checksums });
      }
    };
    const fail = (error: Error) => {
      if (failure) return;
      failure = error;
      source.destroy();
      finish();
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
    /** Full blocks (or, without one, the chunks themselves) waiting for their write: one at a time (see below). */
    const queue: { block: Buffer | undefined; bytes: Buffer; at: number }[] = [];
    /** A chunk written as it is, for want of a block; the source waits while many are queued. */
    const direct = (bytes: Buffer) => {
      for (const [, hash] of hashes) hash.update(bytes);
      queue.push({ block: undefined, bytes, at: position });
      position += bytes.length;
      writing++;
      if (queue.length >= 16 && !pausedForQueue) {
        pausedForQueue = true;
        source.pause();
      }
      pump();
    };
    const blocksOf = (entries: { block: Buffer | undefined }[]) => entries.flatMap((q) => (q.block ? [q.block] : []));
    let inFlight = false;
    const dispatch = () => {
      const full = block!;
      const bytes = fill === full.length ? full : full.subarray(0, fill);
      for (const [, hash] of hashes) hash.update(bytes);
      queue.push({ block: full, bytes, at: position });
      position += fill;
      block = undefined;
      fill = 0;
      writing++;
      pump();
    };
    // One write in flight, not several: concurrent writes to one file contend for its inode lock
    // in the kernel, which spins — a second CPU burnt for nothing (BENCHMARKS.md, Ingest).
    const pump = () => {
      if (inFlight || queue.length === 0) return;
      const { block: full, bytes, at } = queue.shift()!;
      inFlight = true;
      writeAll(handle, bytes, at).then(
        () => {
          inFlight = false;
          writing--;
          if (full) free.push(full);
          if (failure) {
            writing -= queue.length;
            free.push(...blocksOf(queue.splice(0)));
            return finish();
          }
          pump();
          if (pausedForQueue && queue.length < 4) {
            pausedForQueue = false;
            if (held.length === 0) source.resume();
          }
          if (held.length > 0) {
            while (held.length > 0 && takeHeld());
            if (held.length === 0) source.resume();
          }
          if (ended && held.length === 0) end();
        },
        (error: unknown) => {
          inFlight = false;
          writing -= 1 + queue.length;
          free.push(...blocksOf([{ block: full }, ...queue.splice(0)]));
          fail(new VisorError('unavailable', `writing the file failed: ${(error as Error).message}`, { cause: error }));
        },
      );
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
      if (block && fill > 0) dispatch();
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
