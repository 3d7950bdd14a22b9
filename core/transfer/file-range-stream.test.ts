import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isVisorError } from '../errors.js';
import { FileRangeStream, isReceiverGone } from './file-range-stream.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-file-range-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const data = randomBytes(300_000);
const path = join(dir, 'data');
writeFileSync(path, data);

/** A destination that keeps copies of what it was given and answers each write after `delayMs`. */
function collector(delayMs = 0): Writable & { received: Buffer[] } {
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, callback) {
      // A copy: the sender reuses its buffers once a write is done.
      received.push(Buffer.from(chunk));
      if (delayMs) setTimeout(callback, delayMs);
      else callback();
    },
  });
  return Object.assign(sink, { received });
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('FileRangeStream', () => {
  it('sends exactly the range, block by block through two reused buffers, for any range and block size', async () => {
    const offset = fc.nat(data.length);
    const blocks = fc.integer({ min: 1000, max: 70_000 });
    await fc.assert(
      fc.asyncProperty(offset, offset, blocks, async (a, b, blockSize) => {
        const start = Math.min(a, b);
        const length = Math.max(a, b) - start;
        const sink = collector();
        await new FileRangeStream(await open(path), { start, length, blockSize }).sendTo(sink);
        expect(Buffer.concat(sink.received).equals(data.subarray(start, start + length))).toBe(true);
        expect(sink.received.every((chunk) => chunk.length <= blockSize)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('never overwrites a block the destination has not finished with (slow receiver)', async () => {
    const sink = collector(5);
    await new FileRangeStream(await open(path), { length: data.length, blockSize: 16_384 }).sendTo(sink);
    expect(Buffer.concat(sink.received).equals(data)).toBe(true);
  });

  it('with end, ends the destination after the last byte and before the file is closed (not without)', async () => {
    for (const end of [true, false]) {
      const calls: string[] = [];
      const handle = await open(path);
      const watched = new Proxy(handle, {
        get: (target, key) =>
          key === 'close'
            ? () => {
                calls.push('close');
                return target.close();
              }
            : Reflect.get(target, key).bind(target),
      });
      const sink = collector();
      const ending = sink.end.bind(sink);
      sink.end = ((...args: Parameters<typeof sink.end>) => {
        calls.push(`end after ${Buffer.concat(sink.received).length} bytes`);
        return ending(...args);
      }) as typeof sink.end;
      await new FileRangeStream(watched, { start: 5, length: 100_000, blockSize: 16_384 }).sendTo(sink, { end });
      expect(calls[0]).toBe(end ? 'end after 100000 bytes' : 'close');
      if (end) expect(calls[1]).toBe('close');
      expect(sink.writableEnded).toBe(end);
      expect(Buffer.concat(sink.received).equals(data.subarray(5, 100_005))).toBe(true);
    }
  });

  it('reads the same bytes as a Readable, a fresh buffer per block', async () => {
    const stream = new FileRangeStream(await open(path), { start: 1000, length: 200_000, blockSize: 65_536 });
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(data.subarray(1000, 201_000))).toBe(true);
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length);
  });

  it('sends an empty range and ends', async () => {
    const sink = collector();
    await new FileRangeStream(await open(path), { start: 10, length: 0 }).sendTo(sink);
    expect(sink.received).toEqual([]);
    expect((await buffer(new FileRangeStream(await open(path), { length: 0 }))).length).toBe(0);
  });

  it('fails (integrity) on a file shorter than the range, after the bytes it has, and closes it', async () => {
    const short = join(dir, 'short');
    writeFileSync(short, data);
    const handle = await open(short);
    truncateSync(short, 100_000);
    const before = openFds();
    const sink = collector();
    const stream = new FileRangeStream(handle, { length: data.length, blockSize: 30_000 });
    const error = await stream.sendTo(sink).catch((e: unknown) => e);
    expect(isVisorError(error, 'integrity')).toBe(true);
    expect(isReceiverGone(error)).toBe(false);
    expect(Buffer.concat(sink.received).equals(data.subarray(0, 100_000))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(openFds()).toBe(before - 1);

    const read = new FileRangeStream(await open(short), { length: 150_000 });
    await expect(buffer(read)).rejects.toSatisfy((e: unknown) => isVisorError(e, 'integrity'));
  });

  it('stops when the receiver goes away, tells it apart from a store failure, and closes the file', async () => {
    const handle = await open(path);
    const before = openFds();
    const sink = new Writable({
      highWaterMark: 1,
      write(_chunk, _encoding, callback) {
        setTimeout(() => {
          sink.destroy();
          callback();
        }, 5);
      },
    });
    const stream = new FileRangeStream(handle, { length: data.length, blockSize: 10_000 });
    const error = await stream.sendTo(sink).catch((e: unknown) => e);
    expect(isReceiverGone(error)).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(openFds()).toBe(before - 1);
  });

  it('is consumed once: sendTo after reading is refused', async () => {
    const stream = new FileRangeStream(await open(path), { length: 10 });
    await buffer(stream);
    await expect(stream.sendTo(collector())).rejects.toSatisfy((e: unknown) => isVisorError(e, 'internal'));
  });
});
