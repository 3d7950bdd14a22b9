import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError, type ErrorKind } from '../errors.js';
import { putInspected } from '../store/inspected-put.js';
import type { Store } from '../store/port.js';
import { skipAllowed } from './skips.js';

export interface StoreHarness {
  store(): Promise<Store>;
  /** The objects a reader could see right now (for "no partial object, no stray bytes"). */
  listObjects(): Promise<string[]>;
  /** For read-only stores: makes `data` available and returns its URI. */
  seed?(data: Buffer): Promise<string>;
  /** A URI of this store's scheme that points outside it (path traversal attempts). */
  foreignUris?: string[];
  /** Size of the "large" object; big enough to need multipart where the store has it. */
  largeSize?: number;
  cleanup?(): Promise<void>;
}

async function expectKind(promise: Promise<unknown>, kind: ErrorKind): Promise<unknown> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a ${kind} error`).toBeDefined();
  expect(isVisorError(error) ? error.kind : String(error)).toBe(kind);
  return error;
}

const digest = (alg: string, data: Buffer) => createHash(alg).update(data).digest('hex');

/** A source that yields `data` in chunks, then fails (a client that went away mid-upload). */
function failingSource(data: Buffer, failAfter: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= failAfter) {
        this.destroy(new Error('client went away'));
        return;
      }
      const chunk = data.subarray(sent, Math.min(failAfter, sent + 64 * 1024));
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

/** The store contract: one suite for every store (STYLE.md: one behaviour suite per port). */
export function storeContract(name: string, makeHarness: () => Promise<StoreHarness>, skipReason?: string): void {
  describe(`store contract: ${name}`, () => {
    let harness: StoreHarness;
    let store: Store;

    beforeAll(async () => {
      if (skipReason) return;
      harness = await makeHarness();
      store = await harness.store();
    });
    afterAll(async () => {
      if (skipReason || !store) return;
      await store.close();
      await harness.cleanup?.();
    });

    const test = (
      title: string,
      fn: () => Promise<void>,
      options: { writable?: boolean; readOnly?: boolean; timeout?: number } = {},
    ) =>
      it(
        title,
        async (ctx) => {
          if (skipReason) ctx.skip(skipReason);
          if (options.writable && !store.capabilities.writable) skipAllowed(ctx, 'capability', `${name} is read-only`);
          if (options.readOnly && store.capabilities.writable) {
            skipAllowed(ctx, 'capability', `${name} is writable; see the write tests`);
          }
          await fn();
        },
        options.timeout ?? 60_000,
      );

    /** Puts (or, for read-only stores, seeds) an object. */
    const place = async (data: Buffer): Promise<string> =>
      store.capabilities.writable
        ? (await store.put(`obj-${randomBytes(4).toString('hex')}`, Readable.from([data]))).uri
        : harness.seed!(data);

    test(
      'puts a stream and computes size and all checksums in the same pass',
      async () => {
        const data = randomBytes(3 * 1024 * 1024 + 17);
        const result = await store.put('image-1', Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
        expect(result.size).toBe(data.length);
        expect(result.checksums).toEqual({
          md5: digest('md5', data),
          sha256: digest('sha256', data),
          sha512: digest('sha512', data),
        });
        const got = await store.get(result.uri);
        expect(got.size).toBe(data.length);
        expect((await buffer(got.stream)).equals(data)).toBe(true);
      },
      { writable: true },
    );

    test(
      'stores an empty object',
      async () => {
        const result = await store.put('empty', Readable.from([]));
        expect(result.size).toBe(0);
        expect(result.checksums.md5).toBe('d41d8cd98f00b204e9800998ecf8427e');
        expect((await buffer((await store.get(result.uri)).stream)).length).toBe(0);
      },
      { writable: true },
    );

    test(
      'streams a large object through without holding it (multipart where the store has it)',
      async () => {
        const size = harness.largeSize ?? 24 * 1024 * 1024;
        const chunk = randomBytes(1024 * 1024);
        const hash = createHash('sha256');
        let produced = 0;
        const source = new Readable({
          read() {
            if (produced >= size) {
              this.push(null);
              return;
            }
            const part = chunk.subarray(0, Math.min(chunk.length, size - produced));
            produced += part.length;
            hash.update(part);
            this.push(part);
          },
        });
        const result = await store.put('large', source, { size });
        expect(result.size).toBe(size);
        expect(result.checksums.sha256).toBe(hash.digest('hex'));
        expect((await store.head(result.uri)).size).toBe(size);
        const back = createHash('sha256');
        for await (const part of (await store.get(result.uri)).stream) back.update(part as Buffer);
        expect(back.digest('hex')).toBe(result.checksums.sha256);
      },
      { writable: true, timeout: 180_000 },
    );

    test(
      'never overwrites: two puts with the same key give two objects',
      async () => {
        const a = await store.put('same-key', Readable.from([Buffer.from('first')]));
        const b = await store.put('same-key', Readable.from([Buffer.from('second')]));
        expect(a.uri).not.toBe(b.uri);
        expect((await buffer((await store.get(a.uri)).stream)).toString()).toBe('first');
        expect((await buffer((await store.get(b.uri)).stream)).toString()).toBe('second');
      },
      { writable: true },
    );

    test('heads an object', async () => {
      const uri = await place(Buffer.from('hello, head'));
      expect((await store.head(uri)).size).toBe(11);
    });

    test('serves byte ranges', async () => {
      const data = randomBytes(100_000);
      const uri = await place(data);
      const middle = await store.get(uri, { range: { start: 10, end: 19 } });
      expect(middle.range).toEqual({ start: 10, end: 19 });
      expect(middle.size).toBe(data.length);
      expect((await buffer(middle.stream)).equals(data.subarray(10, 20))).toBe(true);
      const tail = await store.get(uri, { range: { start: 99_990 } });
      expect((await buffer(tail.stream)).equals(data.subarray(99_990))).toBe(true);
      const clipped = await store.get(uri, { range: { start: 99_999, end: 200_000 } });
      expect(clipped.range).toEqual({ start: 99_999, end: 99_999 });
      await expectKind(store.get(uri, { range: { start: 100_000 } }), 'invalidInput');
      await expectKind(store.get(uri, { range: { start: 50, end: 40 } }), 'invalidInput');
    });

    test(
      'deletes, idempotently',
      async () => {
        const uri = await store.put('doomed', Readable.from([Buffer.from('x')])).then((r) => r.uri);
        await store.delete(uri);
        await expectKind(store.get(uri), 'notFound');
        await expectKind(store.head(uri), 'notFound');
        await store.delete(uri);
      },
      { writable: true },
    );

    test(
      'refuses content that does not match the declared size or checksums, keeping nothing',
      async () => {
        const before = await harness.listObjects();
        const data = randomBytes(200_000);
        await expectKind(
          store.put('liar', Readable.from([data]), { expected: { sha256: 'f'.repeat(64) } }),
          'integrity',
        );
        await expectKind(
          store.put('liar', Readable.from([data]), { expected: { md5: digest('md5', data), sha512: '0'.repeat(128) } }),
          'integrity',
        );
        await expectKind(store.put('short', Readable.from([data]), { size: data.length + 1 }), 'integrity');
        expect(await harness.listObjects()).toEqual(before);
      },
      { writable: true },
    );

    test(
      'leaves nothing when the source fails midway',
      async () => {
        const before = await harness.listObjects();
        const data = randomBytes(2 * 1024 * 1024);
        const error = await store.put('cut', failingSource(data, 1024 * 1024)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeDefined();
        expect(await harness.listObjects()).toEqual(before);
      },
      { writable: true },
    );

    test(
      'leaves nothing when the put is aborted, and shows no partial object while it runs',
      async () => {
        const before = await harness.listObjects();
        const source = new PassThrough();
        const controller = new AbortController();
        const put = store.put('aborted', source, { signal: controller.signal });
        source.write(randomBytes(512 * 1024));
        await new Promise((r) => setTimeout(r, 200));
        expect(await harness.listObjects()).toEqual(before);
        controller.abort();
        await expect(put).rejects.toBeDefined();
        expect(await harness.listObjects()).toEqual(before);
      },
      { writable: true },
    );

    test(
      'never commits an image refused on the way in (putInspected: a qcow2 declared raw)',
      async () => {
        const before = await harness.listObjects();
        const qcow2 = unsafeImages().qcow2;
        const put = putInspected(store, 'refused-early', Readable.from([qcow2]), {
          declared: 'raw',
          size: qcow2.length,
        });
        const reason = expect.stringMatching(/declared raw, but the content is qcow2/);
        await expect(put).rejects.toMatchObject({ kind: 'unsafe', message: reason });
        expect(await harness.listObjects()).toEqual(before);
      },
      { writable: true },
    );

    test(
      'removes an image refused once stored (putInspected reading back a range it could not keep)',
      async () => {
        const before = await harness.listObjects();
        const vhd = unsafeImages().differencingVhd;
        const put = putInspected(store, 'refused-late', Readable.from([vhd]), { declared: 'vhd', size: vhd.length });
        await expect(put).rejects.toMatchObject({ kind: 'unsafe', message: expect.stringMatching(/differencing VHD/) });
        expect(await harness.listObjects()).toEqual(before);
      },
      { writable: true },
    );

    test(
      'stores an image that passes inspection, with its report (putInspected)',
      async () => {
        const data = randomBytes(2 * 1024 * 1024);
        const result = await putInspected(store, 'inspected', Readable.from([data]), { size: data.length });
        expect(result).toMatchObject({ size: data.length, inspection: { format: 'raw', containerFormat: 'bare' } });
        expect((await buffer((await store.get(result.uri)).stream)).equals(data)).toBe(true);
      },
      { writable: true },
    );

    test(
      'refuses keys that are not plain names',
      async () => {
        for (const key of ['../escape', 'a/b', '', '.hidden', 'x'.repeat(200), 'nul\0byte']) {
          await expectKind(store.put(key, Readable.from([Buffer.from('x')])), 'invalidInput');
        }
      },
      { writable: true },
    );

    test('refuses URIs that point outside the store', async () => {
      for (const uri of ['not a uri', 'ftp://example.com/x', ...(harness.foreignUris ?? [])]) {
        const error = await store.get(uri).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isVisorError(error) ? error.kind : String(error), uri).toMatch(/^(invalidInput|notFound)$/);
      }
    });

    test('reports missing objects as notFound', async () => {
      const uri = await place(Buffer.from('soon gone'));
      const missing = uri.replace(/.$/, (c) => (c === 'z' ? 'y' : 'z'));
      await expectKind(store.get(missing), 'notFound');
    });

    test(
      'refuses writes as unsupported when read-only',
      async () => {
        await expectKind(store.put('x', Readable.from([Buffer.from('x')])), 'unsupported');
      },
      { readOnly: true },
    );

    test('can be closed twice', async () => {
      const extra = await harness.store();
      await extra.close();
      await extra.close();
    });
  });
}

/**
 * Two unsafe images made by hand (no qemu-img needed): a qcow2 header (to be declared raw), and
 * a differencing VHD whose 1.2 MB block table is more than an upload keeps on the way, so that
 * its verdict needs a range read back from the store.
 */
function unsafeImages(): { qcow2: Buffer; differencingVhd: Buffer } {
  const qcow2 = randomBytes(3 * 1024 * 1024);
  Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 2]).copy(qcow2, 0);

  const entries = 300_000;
  const batOffset = 1536;
  const vhd = Buffer.alloc(batOffset + entries * 4 + 512, 0xff);
  const footer = Buffer.alloc(512);
  footer.write('conectix', 0, 'latin1');
  footer.writeUInt32BE(2, 8);
  footer.writeUInt32BE(0x00010000, 12);
  footer.writeBigUInt64BE(512n, 16);
  footer.write('qem2', 28, 'latin1');
  footer.writeBigUInt64BE(BigInt(entries) * 2n * 1024n * 1024n, 40);
  footer.writeBigUInt64BE(BigInt(entries) * 2n * 1024n * 1024n, 48);
  footer.writeUInt32BE(4, 60); // differencing
  vhdChecksum(footer, 64);
  const dynamic = Buffer.alloc(1024);
  dynamic.write('cxsparse', 0, 'latin1');
  dynamic.writeBigUInt64BE(0xffffffffffffffffn, 8);
  dynamic.writeBigUInt64BE(BigInt(batOffset), 16);
  dynamic.writeUInt32BE(0x00010000, 24);
  dynamic.writeUInt32BE(entries, 28);
  dynamic.writeUInt32BE(2 * 1024 * 1024, 32);
  Buffer.from('parent.vhd', 'utf16le').swap16().copy(dynamic, 64);
  vhdChecksum(dynamic, 36);
  footer.copy(vhd, 0);
  dynamic.copy(vhd, 512);
  footer.copy(vhd, vhd.length - 512);
  return { qcow2, differencingVhd: vhd };
}

function vhdChecksum(block: Buffer, at: number): void {
  block.writeUInt32BE(0, at);
  let sum = 0;
  for (const b of block) sum += b;
  block.writeUInt32BE(~sum >>> 0, at);
}
