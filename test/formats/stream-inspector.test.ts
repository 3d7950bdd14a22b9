import { readFile } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { isVisorError } from '../../core/errors.js';
import { bufferReader, countingReader, inspectImage, type InspectOptions } from '../../core/formats/index.js';
import { InspectingStream } from '../../core/formats/stream-inspector.js';
import { makeImageCorpus, type CorpusEntry } from '../support/image-corpus.js';
import { prng } from '../support/prng.js';
import { createImage, scratch } from './images.js';
import { requirePeer } from '../peers/index.js';

/**
 * InspectingStream (core/formats/stream-inspector.ts) decides exactly what inspectImage decides
 * on the whole file, for every class of image, however the bytes are cut into chunks, with or
 * without the length announced; and it decides from the bytes it kept as they passed, without
 * reading anything again, whenever the length is announced.
 */
async function verdictOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (report) => ({ accepted: report }),
    (error: unknown) => {
      if (!isVisorError(error)) throw error;
      return { refused: { kind: error.kind, message: error.message } };
    },
  );
}

/** Streams `data` in chunks of random sizes through an InspectingStream; the verdict, and what it read again. */
async function streamed(
  data: Buffer,
  options: InspectOptions,
  seed: number,
  announce: boolean,
): Promise<{ verdict: unknown; reread: number; passed: number }> {
  const random = prng(seed);
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, random.pick([1, 7, 512, 4096, 65_536, 200_000, random.int(1, 300_000)]));
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  const tap = new InspectingStream({ ...options, ...(announce ? { size: data.length } : {}) });
  let passed = 0;
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      passed += chunk.length;
      cb();
    },
  });
  const fallback = countingReader(bufferReader(data));
  const verdict = await verdictOf(
    pipeline(Readable.from(chunks, { objectMode: false }), tap, sink).then(() => tap.inspect(fallback)),
  );
  return { verdict, reread: fallback.bytesRead, passed };
}

describe('formats: inspecting an image as it streams', () => {
  let skip: string | undefined;
  let dir: Awaited<ReturnType<typeof scratch>>;
  let corpus: CorpusEntry[] = [];

  beforeAll(async () => {
    skip = (await requirePeer('qemu-img')).skip;
    dir = await scratch('stream');
    if (!skip) corpus = await makeImageCorpus(dir.dir);
  }, 600_000);
  afterAll(() => dir.cleanup());

  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  it('decides as inspectImage does on the whole file, for every class of image and every chunking', async (ctx) => {
    need(ctx);
    expect(corpus.length).toBeGreaterThan(40);
    for (const entry of corpus) {
      const options: InspectOptions = {
        ...(entry.declared ? { declared: entry.declared } : {}),
        ...(entry.container ? { container: entry.container } : {}),
      };
      const expected = await verdictOf(inspectImage(bufferReader(entry.data), options));
      // The corpus says what each image is; inspectImage agrees (else the corpus is wrong).
      if ('kind' in entry.expect)
        expect(expected, entry.name).toMatchObject({
          refused: { kind: entry.expect.kind, message: expect.stringMatching(entry.expect.reason) },
        });
      else expect(expected, entry.name).toHaveProperty('accepted');
      for (const seed of [1, 2, 3]) {
        for (const announce of [true, false]) {
          const result = await streamed(entry.data, options, seed, announce);
          const label = `${entry.name} (seed ${seed}, length ${announce ? 'announced' : 'unknown'})`;
          expect(withoutBytesRead(result.verdict), label).toEqual(withoutBytesRead(expected));
          expect(result.passed, label).toBe(entry.data.length);
          // With the length announced, everything inspection reads is kept on the way.
          if (announce) expect(result.reread, label).toBe(0);
        }
      }
    }
  }, 300_000);

  it('reads again only what it could not keep (a block table over its bound), deciding the same', async (ctx) => {
    need(ctx);
    // A 1 TiB VHD has a 2 MiB block table: more than a stream keeps; the rest is read from the store.
    const huge = await readFile(createImage(dir.path('huge.vhd'), 'vpc', '1T'));
    const expected = await verdictOf(inspectImage(bufferReader(huge), { declared: 'vhd' }));
    expect(expected).toMatchObject({ accepted: { format: 'vhd', virtualSize: 1024 ** 4 } });
    const result = await streamed(huge, { declared: 'vhd' }, 4, true);
    expect(withoutBytesRead(result.verdict)).toEqual(withoutBytesRead(expected));
    expect(result.reread).toBeGreaterThan(0);
    expect(result.reread).toBeLessThan(huge.length);
  });

  it('refuses from the stream itself: the writer never sees the end of a refused image', async (ctx) => {
    need(ctx);
    const backing = corpus.find((e) => e.name === 'qcow2 with a backing file')!;
    let ended = false;
    const sink = new Writable({
      write: (_c, _e, cb) => cb(),
      final(cb) {
        ended = true;
        cb();
      },
    });
    await expect(
      pipeline(
        Readable.from([backing.data]),
        new InspectingStream({ declared: 'qcow2', size: backing.data.length }),
        sink,
      ),
    ).rejects.toMatchObject({ kind: 'unsafe' });
    expect(ended).toBe(false);
  });

  it('keeps bounded memory: a multi-GiB stream of zeros costs what its first and last bytes do', async () => {
    // 2 GiB of one reused zero chunk: raw. The kept bytes are the head and the tail only.
    const chunk = Buffer.alloc(1024 * 1024);
    const total = 2048;
    const tap = new InspectingStream({ declared: 'raw', size: total * chunk.length });
    const before = process.memoryUsage().arrayBuffers;
    let i = 0;
    const source = new Readable({
      read() {
        this.push(i++ < total ? chunk : null);
      },
    });
    await pipeline(source, tap, new Writable({ write: (_c, _e, cb) => cb() }));
    expect(tap.verdict()).toMatchObject({ state: 'accepted', report: { format: 'raw', size: total * chunk.length } });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  }, 60_000);
});

/** Reports differ only in bytesRead (what the inspector read, wherever it read it from). */
function withoutBytesRead(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutBytesRead);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => k !== 'bytesRead')
        .map(([k, v]) => [k, withoutBytesRead(v)]),
    );
  return value;
}
