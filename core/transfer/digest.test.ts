import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { builtModule, runModuleScript } from '../../test/support/module-process.js';
import { expectedDigests } from '../../test/support/digests.js';
import { DigestStream } from './digest.js';
import { ParallelDigestStream } from './parallel-digest.js';

const expected = expectedDigests;

async function run(
  make: () => DigestStream | ParallelDigestStream,
  chunks: Buffer[],
): Promise<{ result: ReturnType<DigestStream['result']>; passed: Buffer }> {
  const digest = make();
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    digest,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return { result: digest.result(), passed: Buffer.concat(out) };
}

describe.each([
  ['DigestStream', () => new DigestStream()],
  ['ParallelDigestStream', () => new ParallelDigestStream()],
] as const)('%s', (_name, make) => {
  it('passes every byte through and computes size, md5, sha256 and sha512', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3 * 1024 * 1024 }), { maxLength: 8 }), async (sizes) => {
        const chunks = sizes.map((n) => randomBytes(n));
        const data = Buffer.concat(chunks);
        const { result, passed } = await run(make, chunks);
        expect(result).toEqual(expected(data));
        expect(passed.equals(data)).toBe(true);
      }),
      { numRuns: 15 },
    );
  });

  it('handles an empty stream', async () => {
    expect((await run(make, [])).result).toEqual(expected(Buffer.alloc(0)));
  });

  it('keeps several concurrent streams apart', async () => {
    const inputs = Array.from({ length: 5 }, (_, i) => [randomBytes(100_000 * (i + 1)), randomBytes(2_500_000)]);
    const results = await Promise.all(inputs.map((chunks) => run(make, chunks)));
    for (const [i, r] of results.entries()) expect(r.result).toEqual(expected(Buffer.concat(inputs[i]!)));
  });

  it('fails cleanly when the source fails midway', async () => {
    const source = new PassThrough();
    const done = pipeline(source, make(), new Writable({ write: (_c, _e, cb) => cb() }));
    source.write(randomBytes(3 * 1024 * 1024));
    source.destroy(new Error('client went away'));
    await expect(done).rejects.toThrow('client went away');
  });
});

describe('ParallelDigestStream in a process of its own (the built module)', () => {
  // The hashing threads must keep a process alive while a digest is pending (else it exits
  // mid-upload) and must not keep it alive afterwards (else a CLI that stored a file never exits).
  it('lets the process finish its digest, then exit', async () => {
    const module = builtModule('core/transfer/parallel-digest.js');
    const result = runModuleScript(
      `
      import { Readable, Writable } from 'node:stream';
      import { pipeline } from 'node:stream/promises';
      const { ParallelDigestStream } = await import(${JSON.stringify(module)});
      const digest = new ParallelDigestStream();
      await pipeline(Readable.from([Buffer.alloc(3 * 1024 * 1024, ` +
        `1)]), digest, new Writable({ write: (_c, _e, cb) => cb() }));
      console.log(digest.result().checksums.md5);
    `,
    );
    expect(result.signal, 'still running after 20 s: the hashing threads keep the process alive').toBeNull();
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(
      createHash('md5')
        .update(Buffer.alloc(3 * 1024 * 1024, 1))
        .digest('hex'),
    );
  });
});

describe('ParallelDigestStream shares one bounded set of slots', () => {
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

  it('hashes more concurrent streams than the pool has slots, each correctly', async () => {
    // 48 streams of 3 MiB want 4 slots each; the pool has 32: they take turns.
    const inputs = Array.from({ length: 48 }, () => [randomBytes(1024 * 1024 + 7), randomBytes(2 * 1024 * 1024)]);
    const results = await Promise.all(inputs.map((chunks) => run(() => new ParallelDigestStream(), chunks)));
    for (const [i, r] of results.entries()) expect(r.result).toEqual(expected(Buffer.concat(inputs[i]!)));
  }, 60_000);

  it('lets a stream through while more streams than the pool has slots sit half-filled and stalled', async () => {
    // Stalled uploads must not pin the slots: each holds a half-filled one only until the pool
    // hands it to the workers as it is.
    const stalled = Array.from({ length: 40 }, () => {
      const source = new PassThrough();
      const first = randomBytes(100 * 1024);
      source.write(first);
      const digest = new ParallelDigestStream();
      return { source, first, digest, done: pipeline(source, digest, sink()) };
    });
    await new Promise((r) => setTimeout(r, 100));
    const data = [randomBytes(5 * 1024 * 1024)];
    const started = Date.now();
    expect((await run(() => new ParallelDigestStream(), data)).result).toEqual(expected(data[0]!));
    expect(Date.now() - started).toBeLessThan(10_000);
    // And the stalled ones still hash exactly what they were given once they go on.
    const rest = stalled.map(() => randomBytes(300 * 1024));
    for (const [i, s] of stalled.entries()) s.source.end(rest[i]);
    await Promise.all(stalled.map((s) => s.done));
    for (const [i, s] of stalled.entries())
      expect(s.digest.result()).toEqual(expected(Buffer.concat([s.first, rest[i]!])));
  }, 60_000);

  it('gives the slots of a failed stream back', async () => {
    for (let i = 0; i < 40; i++) {
      const source = new PassThrough();
      const done = pipeline(source, new ParallelDigestStream(), sink());
      source.write(randomBytes(2 * 1024 * 1024 + 5));
      source.destroy(new Error('client went away'));
      await expect(done).rejects.toThrow('client went away');
    }
    const data = [randomBytes(6 * 1024 * 1024)];
    expect((await run(() => new ParallelDigestStream(), data)).result).toEqual(expected(data[0]!));
  }, 60_000);
});
