import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type FileHandle, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { builtModule, runModuleScript } from '../../test/support/module-process.js';
import { isVisorError } from '../errors.js';
import { blockPoolUse, WRITE_BLOCK_SIZE, writeInBlocks } from './block-file-writer.js';
import { hashingThreads, hashingUse } from './off-thread-sha256.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/** Cuts `data` into chunks of random sizes (1 byte to 3 blocks), as a socket might deliver it. */
function chunked(data: Buffer, blockSize: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; ) {
    const n = 1 + Math.floor(Math.random() * 3 * blockSize);
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  return chunks;
}

/** Cuts `data` into chunks of the sizes given, in turn (odd sizes straddle the block boundaries). */
function cut(data: Buffer, sizes: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  return chunks;
}

const B = WRITE_BLOCK_SIZE;
const tick = () => new Promise((r) => setImmediate(r));

describe('writeInBlocks', () => {
  let dir: string;
  let n = 0;
  const path = () => join(dir, `f${n++}`);
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-blocks-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['empty', 0],
    ['one byte', 1],
    ['exactly one block', 1000],
    ['blocks and a tail', 37_123],
  ])('writes %s in order, with its size and digests', async (_what, size) => {
    const data = randomBytes(size);
    const file = path();
    const handle = await open(file, 'wx');
    try {
      const result = await writeInBlocks(Readable.from(chunked(data, 1000)), handle, {
        algorithms: ['sha256', 'md5'],
        blockSize: 1000,
      });
      expect(result).toEqual({ size, checksums: { sha256: sha256(data), md5: md5(data) } });
    } finally {
      await handle.close();
    }
    expect((await readFile(file)).equals(data)).toBe(true);
  });

  it('keeps the order when a burst of chunks outruns the writes (the source is paused, nothing lost)', async () => {
    const data = randomBytes(200_000);
    const file = path();
    const handle = await open(file, 'wx');
    const source = new PassThrough({ highWaterMark: 1 });
    const done = writeInBlocks(source, handle, { algorithms: ['sha256'], blockSize: 512 });
    // Everything at once: far more than the three blocks a stream may own.
    for (const chunk of chunked(data, 512)) source.write(chunk);
    source.end();
    try {
      await expect(done).resolves.toEqual({ size: data.length, checksums: { sha256: sha256(data) } });
    } finally {
      await handle.close();
    }
    expect((await readFile(file)).equals(data)).toBe(true);
  });

  it('rejects when the source fails, after the writes in flight have settled', async () => {
    const handle = await open(path(), 'wx');
    const source = new PassThrough();
    const done = writeInBlocks(source, handle, { algorithms: ['sha256'], blockSize: 100 });
    source.write(randomBytes(1000));
    source.destroy(new Error('connection reset'));
    await expect(done).rejects.toThrow('connection reset');
    await handle.close();
  });

  it('rejects a source that closes before its end (a cut-off upload)', async () => {
    const handle = await open(path(), 'wx');
    const source = new PassThrough();
    const done = writeInBlocks(source, handle, { algorithms: ['sha256'], blockSize: 100 });
    source.write(randomBytes(150));
    source.destroy();
    const error = await done.catch((e: unknown) => e);
    expect(isVisorError(error, 'unavailable')).toBe(true);
    await handle.close();
  });

  it('rejects when aborted, before or during the copy', async () => {
    const before = await open(path(), 'wx');
    await expect(
      writeInBlocks(new PassThrough(), before, { algorithms: [], signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    await before.close();
    const during = await open(path(), 'wx');
    const controller = new AbortController();
    const source = new PassThrough();
    const done = writeInBlocks(source, during, { algorithms: [], signal: controller.signal, blockSize: 100 });
    source.write(randomBytes(500));
    controller.abort();
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
    expect(source.destroyed).toBe(true);
    await during.close();
  });

  it('rejects with a clear error when the file cannot be written', async () => {
    const file = path();
    await writeFile(file, '');
    const readOnly = await open(file, 'r');
    const error = await writeInBlocks(Readable.from([randomBytes(300)]), readOnly, {
      algorithms: [],
      blockSize: 100,
    }).catch((e: unknown) => e);
    await readOnly.close();
    expect(isVisorError(error, 'unavailable')).toBe(true);
    expect((error as Error).message).toMatch(/writing the file failed/);
  });

  /** `handle` with its datasync observed: each call's bytes-written-so-far, and a gate to hold it. */
  function watchedDatasync(handle: FileHandle, fail?: Error) {
    const calls: number[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let settled = 0;
    const datasync = async () => {
      calls.push((await handle.stat()).size);
      await held;
      settled++;
      if (fail) throw fail;
      return handle.datasync();
    };
    return {
      handle: new Proxy(handle, {
        get: (target, key) => (key === 'datasync' ? datasync : Reflect.get(target, key).bind(target)),
      }) as FileHandle,
      calls,
      release,
      settled: () => settled,
    };
  }

  it('starts syncing the file while the upload goes on, and settles only after the last sync', async () => {
    const data = randomBytes(10_000);
    const file = path();
    const raw = await open(file, 'wx');
    const watched = watchedDatasync(raw);
    const source = new PassThrough();
    let resolved = false;
    const done = writeInBlocks(source, watched.handle, { algorithms: ['sha256'], blockSize: 1000, syncEvery: 3000 });
    void done.then(() => {
      resolved = true;
    });
    source.write(data.subarray(0, 5000));
    await vi.waitFor(() => expect(watched.calls.length).toBe(1));
    // The first sync began once 3000 bytes were written, long before the upload ended; one at a time.
    expect(watched.calls[0]).toBeGreaterThanOrEqual(3000);
    expect(watched.calls[0]).toBeLessThan(data.length);
    source.end(data.subarray(5000));
    for (let i = 0; i < 20; i++) await tick();
    expect(resolved).toBe(false);
    expect(watched.calls.length).toBe(1);
    watched.release();
    try {
      await expect(done).resolves.toEqual({ size: data.length, checksums: { sha256: sha256(data) } });
      // The rest was written while the first sync was held; no second one ran beside it.
      expect(watched.calls.length).toBe(1);
      expect(watched.settled()).toBe(1);
    } finally {
      await raw.close();
    }
    expect((await readFile(file)).equals(data)).toBe(true);
  });

  it('rejects with a clear error when an early sync fails (a disk error is not an upload)', async () => {
    const raw = await open(path(), 'wx');
    const watched = watchedDatasync(raw, Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    watched.release();
    const error = await writeInBlocks(Readable.from(chunked(randomBytes(8000), 1000)), watched.handle, {
      algorithms: ['sha256'],
      blockSize: 1000,
      syncEvery: 2000,
    }).catch((e: unknown) => e);
    await raw.close();
    expect(isVisorError(error, 'unavailable')).toBe(true);
    expect((error as Error).message).toMatch(/flushing the file failed: EIO/);
    expect(watched.calls.length).toBe(1);
  });

  it('syncs nothing itself without syncEvery', async () => {
    const raw = await open(path(), 'wx');
    const watched = watchedDatasync(raw);
    watched.release();
    const data = randomBytes(8000);
    await writeInBlocks(Readable.from(chunked(data, 1000)), watched.handle, { algorithms: [], blockSize: 1000 });
    await raw.close();
    expect(watched.calls).toEqual([]);
  });

  // Stalled streams hand their blocks back; those that find none write their chunks as they come.
  it('shares one bounded pool of blocks among many streams', async () => {
    const streams = 30;
    const data = Array.from({ length: streams }, () => randomBytes(WRITE_BLOCK_SIZE + 123_457));
    const sources = data.map(() => new PassThrough());
    const handles = await Promise.all(data.map(() => open(path(), 'w+')));
    const writes = sources.map((source, i) => writeInBlocks(source, handles[i]!, { algorithms: ['sha256'] }));
    // Every stream sends a part (some into blocks, the others without one), then stalls.
    for (const [i, source] of sources.entries()) source.write(data[i]!.subarray(0, 1_000_000));
    await new Promise((r) => setTimeout(r, 50));
    expect(blockPoolUse().inUse).toBeLessThanOrEqual(blockPoolUse().max);
    // Quiet for longer than the idle time: half-filled blocks are written out and handed back.
    await new Promise((r) => setTimeout(r, 800));
    expect(blockPoolUse().inUse).toBe(0);
    for (const [i, source] of sources.entries()) {
      for (const chunk of chunked(data[i]!.subarray(1_000_000), 64 * 1024)) source.write(chunk);
      source.end();
    }
    const results = await Promise.all(writes);
    for (const [i, result] of results.entries()) {
      expect(result).toEqual({ size: data[i]!.length, checksums: { sha256: sha256(data[i]!) } });
      const written = Buffer.alloc(data[i]!.length);
      await handles[i]!.read(written, 0, written.length, 0);
      expect(written.equals(data[i]!)).toBe(true);
    }
    await Promise.all(handles.map((h) => h.close()));
    expect(blockPoolUse().inUse).toBe(0);
  }, 60_000);

  it('rejects at once a source that failed or closed before it was handed over (no hang)', async () => {
    const errored = new PassThrough();
    errored.on('error', () => undefined); // seen by whoever handed it over, before the writer
    errored.destroy(new Error('refused by the inspector'));
    const closed = new PassThrough();
    closed.destroy();
    await new Promise((r) => setImmediate(r));
    for (const [source, message] of [
      [errored, /refused by the inspector/],
      [closed, /ended before its last byte/],
    ] as const) {
      const handle = await open(path(), 'w+');
      try {
        await expect(writeInBlocks(source, handle, { algorithms: ['sha256'] })).rejects.toThrow(message);
      } finally {
        await handle.close();
      }
    }
  });
  // The standard block size: the path an upload through the API takes.
  it.each([
    ['empty', 0, false],
    ['one byte', 1, false],
    ['a block less one byte', B - 1, false],
    ['exactly one block', B, true],
    ['a block and one byte', B + 1, true],
    ['several blocks and a tail', 3 * B + 12_345, true],
  ])('hashes %s of real blocks to the sha256 of the bytes written', async (_what, size, onThread) => {
    const data = randomBytes(size);
    const file = path();
    const handle = await open(file, 'wx');
    const before = hashingUse().sessionsOpened;
    try {
      const source = Readable.from(cut(data, [65_537, 1, 777, 1_000_003]));
      const result = await writeInBlocks(source, handle, { algorithms: ['sha256'] });
      expect(result).toEqual({ size, checksums: { sha256: sha256(data) } });
    } finally {
      await handle.close();
    }
    expect((await readFile(file)).equals(data)).toBe(true);
    // Whatever fits in the first block is hashed inline: no thread round trip for a small upload.
    expect(hashingUse().sessionsOpened - before).toBe(onThread ? 1 : 0);
    expect(hashingUse().openSessions).toBe(0);
    expect(blockPoolUse().inUse).toBe(0);
  });

  it('hashes chunks that found no block (copied to the thread) in order with the blocks', async () => {
    const data = randomBytes(2 * B + 999);
    const file = path();
    const handle = await open(file, 'wx');
    const source = new PassThrough();
    const done = writeInBlocks(source, handle, { algorithms: ['sha256'] });
    const before = hashingUse().sessionsOpened;
    // A few bytes, then quiet: the partial block goes to the thread and the block is handed back.
    source.write(data.subarray(0, 100));
    await new Promise((r) => setTimeout(r, 700));
    expect(hashingUse().sessionsOpened - before).toBe(1);
    // Other streams take every block of the pool meanwhile.
    const others = Array.from({ length: 6 }, () => new PassThrough());
    const otherData = others.map(() => randomBytes(3 * B));
    const otherHandles = await Promise.all(others.map(() => open(path(), 'wx')));
    const otherWrites = others.map((o, i) => writeInBlocks(o, otherHandles[i]!, { algorithms: ['sha256'] }));
    for (const [i, o] of others.entries()) o.write(otherData[i]);
    await tick();
    expect(blockPoolUse().inUse).toBe(blockPoolUse().max);
    for (const chunk of cut(data.subarray(100), [65_536, 4_097])) source.write(chunk);
    source.end();
    for (const o of others) o.end();
    try {
      await expect(done).resolves.toEqual({ size: data.length, checksums: { sha256: sha256(data) } });
      const results = await Promise.all(otherWrites);
      for (const [i, r] of results.entries()) expect(r.checksums.sha256).toBe(sha256(otherData[i]!));
    } finally {
      await Promise.all([handle, ...otherHandles].map((h) => h.close()));
    }
    expect((await readFile(file)).equals(data)).toBe(true);
    expect(blockPoolUse().inUse).toBe(0);
    expect(hashingUse().openSessions).toBe(0);
  }, 60_000);

  it('fails the upload with a typed error when the hashing thread dies; the next upload gets a fresh one', async () => {
    const handle = await open(path(), 'wx');
    const source = new PassThrough();
    const done = writeInBlocks(source, handle, { algorithms: ['sha256'] });
    const failed = done.catch((e: unknown) => e);
    source.write(randomBytes(2 * B + 10));
    while (hashingThreads().length === 0) await tick();
    const killed = hashingThreads().map((w) => w.threadId);
    await Promise.all(hashingThreads().map((w) => w.terminate()));
    source.write(randomBytes(2 * B));
    const error = await failed;
    await handle.close();
    expect(isVisorError(error, 'internal')).toBe(true);
    expect((error as Error).message).toMatch(/hashing thread failed/);
    expect(source.destroyed).toBe(true);
    // Settled before it rejected: every block is back, no session is left open.
    expect(blockPoolUse().inUse).toBe(0);
    expect(hashingUse().openSessions).toBe(0);

    const data = randomBytes(2 * B + 3);
    const next = await open(path(), 'wx');
    try {
      await expect(
        writeInBlocks(Readable.from(cut(data, [65_536])), next, { algorithms: ['sha256'] }),
      ).resolves.toEqual({ size: data.length, checksums: { sha256: sha256(data) } });
    } finally {
      await next.close();
    }
    expect(hashingThreads().map((w) => w.threadId)).not.toEqual(expect.arrayContaining(killed));
  }, 60_000);

  it('settles the writes and hash updates in flight before it rejects an abort', async () => {
    const handle = await open(path(), 'wx');
    const controller = new AbortController();
    const source = new PassThrough();
    const done = writeInBlocks(source, handle, { algorithms: ['sha256'], signal: controller.signal });
    const before = hashingUse().sessionsOpened;
    // Several full blocks: writes and hash updates in flight when the abort comes.
    source.write(randomBytes(3 * B));
    await tick();
    expect(hashingUse().sessionsOpened - before).toBe(1);
    expect(blockPoolUse().inUse).toBeGreaterThan(0);
    controller.abort();
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
    // Checked at once: the blocks come back only once both their write and their hash have settled.
    expect(blockPoolUse().inUse).toBe(0);
    expect(hashingUse().openSessions).toBe(0);
    expect(source.destroyed).toBe(true);
    await handle.close();
  }, 60_000);

  it('keeps blocks and hashing threads bounded while many large uploads flow at once', async () => {
    const streams = 8;
    const data = Array.from({ length: streams }, (_, i) => randomBytes(3 * B + 1_000 * i));
    const handles = await Promise.all(data.map(() => open(path(), 'wx')));
    let peakBlocks = 0;
    let peakThreads = 0;
    const sample = setInterval(() => {
      peakBlocks = Math.max(peakBlocks, blockPoolUse().inUse + blockPoolUse().spare);
      peakThreads = Math.max(peakThreads, hashingUse().threads);
    }, 1);
    try {
      const results = await Promise.all(
        data.map((d, i) =>
          writeInBlocks(Readable.from(cut(d, [65_536, 333])), handles[i]!, { algorithms: ['sha256'] }),
        ),
      );
      for (const [i, r] of results.entries())
        expect(r).toEqual({ size: data[i]!.length, checksums: { sha256: sha256(data[i]!) } });
    } finally {
      clearInterval(sample);
      await Promise.all(handles.map((h) => h.close()));
    }
    expect(peakBlocks).toBeGreaterThan(0);
    expect(peakBlocks).toBeLessThanOrEqual(blockPoolUse().max);
    expect(peakThreads).toBeLessThanOrEqual(hashingUse().maxThreads);
    expect(hashingUse().openSessions).toBe(0);
  }, 60_000);
});

describe('writeInBlocks in a process of its own (the built module)', () => {
  // The hashing thread must keep a process alive while a digest is awaited (a one-shot command storing a
  // file would else exit mid-upload) and must not keep it alive afterwards (it would never exit).
  it('lets the process finish its digest, then exit', () => {
    const module = builtModule('core/transfer/block-file-writer.js');
    const dir = mkdtempSync(join(tmpdir(), 'visor-blocks-'));
    const result = runModuleScript(`
      import { open } from 'node:fs/promises';
      import { Readable } from 'node:stream';
      const { writeInBlocks } = await import(${JSON.stringify(module)});
      const handle = await open(${JSON.stringify(join(dir, 'out'))}, 'wx');
      const chunks = Array.from({ length: 200 }, () => Buffer.alloc(65536, 1));
      const result = await writeInBlocks(Readable.from(chunks), handle, { algorithms: ['sha256'] });
      await handle.close();
      console.log(result.checksums.sha256);
    `);
    rmSync(dir, { recursive: true, force: true });
    expect(result.signal, 'still running after 20 s: the hashing thread keeps the process alive').toBeNull();
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(sha256(Buffer.alloc(200 * 65536, 1)));
  });
});
