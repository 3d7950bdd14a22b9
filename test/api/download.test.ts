import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readdir, truncate } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '../../core/auth/signing.js';
import { FILE_BLOCK_SIZE } from '../../core/transfer/file-range-stream.js';
import { startTestServer, type TestServer } from '../support/api-server.js';
import { rawRequest } from '../support/raw-http.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const openFds = () => readdirSync('/proc/self/fd').length;

async function settle(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

/**
 * Downloads through the API: the file store writes blocks straight to the socket (reused
 * buffers), so the body must still be exactly the bytes — whole, ranged, empty, concurrent — and
 * a failure on either side must end the response visibly (a short body), leaking nothing.
 */
describe('image downloads', () => {
  let t: TestServer;
  // More than two blocks, not a multiple of the block size: every block boundary is crossed.
  const data = randomBytes(3 * FILE_BLOCK_SIZE + 17);
  let id: string;
  let emptyId: string;

  beforeAll(async () => {
    t = await startTestServer();
    id = await upload('big', data);
    // Uploads of empty images are refused (inspection: nothing to boot), but a catalog may hold
    // one (older catalogs, other writers): made here in the store and the catalog directly.
    const bob = { name: 'bob', admin: false };
    const empty = await t.server.service.register(bob, { name: 'empty', architecture: 'x86_64', access: 'public' });
    emptyId = empty.id;
    const stored = await t.server.stores.get('local')!.put(emptyId, Readable.from([]));
    const location = { store: 'local', uri: stored.uri };
    const changes = { status: 'available' as const, location, size: 0, checksums: stored.checksums };
    await t.server.catalog.images.update(emptyId, empty.revision, changes);
  });
  afterAll(async () => t.close());

  async function upload(name: string, bytes: Buffer): Promise<string> {
    const source = { stream: Readable.from([bytes]), size: bytes.length };
    return String((await t.client('bob').add({ name, architecture: 'x86_64' }, source))['_id']);
  }

  const get = (imageId: string, headers: Record<string, string> = {}) =>
    rawRequest(t.url, { method: 'GET', path: `/images/${imageId}`, headers, as: t.users.bob });

  it('sends the whole file with its length, checksum header and ranges announced', async () => {
    const whole = await get(id);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-length']).toBe(String(data.length));
    expect(whole.headers['accept-ranges']).toBe('bytes');
    expect(whole.headers['content-type']).toBe('application/octet-stream');
    expect(whole.headers['x-image-meta-sha256']).toBe(sha256(data));
    expect(whole.body.equals(data)).toBe(true);
  });

  const size = data.length;
  const B = FILE_BLOCK_SIZE;
  it.each([
    ['bytes=0-0', 0, 0],
    [`bytes=${size - 1}-${size - 1}`, size - 1, size - 1],
    [`bytes=${size - 1}-`, size - 1, size - 1],
    ['bytes=0-', 0, size - 1],
    [`bytes=${B - 1}-${B}`, B - 1, B],
    [`bytes=${B}-${2 * B - 1}`, B, 2 * B - 1],
    [`bytes=${B - 3}-${2 * B + 5}`, B - 3, 2 * B + 5],
    [`bytes=1000-${size + 5000}`, 1000, size - 1],
    ['bytes=-1', size - 1, size - 1],
    [`bytes=-${size + 10}`, 0, size - 1],
    [` bytes=5-9 `, 5, 9],
  ])('serves %s as 206 with exactly those bytes', async (range, start, end) => {
    const part = await get(id, { range });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes ${start}-${end}/${size}`);
    expect(part.headers['content-length']).toBe(String(end - start + 1));
    expect(part.body.equals(data.subarray(start, end + 1))).toBe(true);
  });

  const unsatisfiable = [`bytes=${size}-`, `bytes=${size}-${size + 10}`, 'bytes=-0', 'bytes=10-5'];
  it.each(unsatisfiable)('refuses %s with 416 and the size', async (range) => {
    const answer = await get(id, { range });
    expect(answer.status).toBe(416);
    expect(answer.headers['content-range']).toBe(`bytes */${size}`);
  });

  const ignored = ['bytes=0-1,5-6', 'items=0-5', 'bytes=a-b', 'bytes=-'];
  it.each(ignored)('serves the whole file for a range it ignores (%s)', async (range) => {
    const answer = await get(id, { range });
    expect(answer.status).toBe(200);
    expect(answer.body.equals(data)).toBe(true);
  });

  it('serves an empty image (200, no bytes) and refuses any range of it', async () => {
    const whole = await get(emptyId);
    expect(whole.status).toBe(200);
    expect(whole.headers['content-length']).toBe('0');
    expect(whole.body.length).toBe(0);
    expect((await get(emptyId, { range: 'bytes=0-' })).status).toBe(416);
    expect((await get(emptyId, { range: 'bytes=-5' })).status).toBe(416);
  });

  it('serves many downloads at once, each with exactly the bytes', async () => {
    const rangeOf = (i: number) => (i % 3 === 0 ? undefined : `bytes=${i * 1000}-${i * 200_000 + 5}`);
    const ranges = Array.from({ length: 12 }, (_, i) => rangeOf(i));
    const answers = await Promise.all(ranges.map((range) => get(id, range ? { range } : {})));
    answers.forEach((answer, i) => {
      const range = ranges[i];
      if (!range) expect(answer.body.equals(data)).toBe(true);
      else expect(answer.body.equals(data.subarray(i * 1000, i * 200_000 + 6))).toBe(true);
    });
  });

  /** A download read by hand: the response, paused after its headers. */
  function openDownload(imageId: string): Promise<IncomingMessage> {
    const path = `/images/${imageId}`;
    const { accessKey, secretKey } = t.users.bob;
    const headers = signRequest(accessKey, secretKey, { method: 'GET', path, query: [], headers: {} });
    return new Promise((resolve, reject) => {
      const req = httpRequest(new URL(path, t.url), { headers, agent: false }, (res) => {
        res.pause();
        resolve(res);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('a client that goes away mid-download leaves no file open, and the server goes on serving', async () => {
    const before = openFds();
    const res = await openDownload(id);
    expect(res.statusCode).toBe(200);
    res.destroy();
    await settle(() => openFds() <= before);
    expect(openFds()).toBeLessThanOrEqual(before);
    expect((await get(id, { range: 'bytes=0-9' })).body.equals(data.subarray(0, 10))).toBe(true);
  });

  it('a stored file that shrinks mid-download cuts the body short (the client sees it), never pads it', async () => {
    const big = randomBytes(16 * FILE_BLOCK_SIZE);
    const bigId = await upload('shrinks', big);
    const files = await readdir(join(t.dataDir, 'images'));
    const file = files.find((name) => name.startsWith(bigId));
    expect(file).toBeDefined();
    const before = openFds();
    const res = await openDownload(bigId);
    expect(res.headers['content-length']).toBe(String(big.length));
    await truncate(join(t.dataDir, 'images', file!), FILE_BLOCK_SIZE);
    const received: Buffer[] = [];
    const outcome = await new Promise<string>((resolve) => {
      res.on('data', (chunk: Buffer) => received.push(chunk));
      res.on('end', () => resolve('end'));
      res.on('error', () => resolve('error'));
      res.on('aborted', () => resolve('aborted'));
      res.resume();
    });
    expect(outcome).not.toBe('end');
    const got = Buffer.concat(received);
    expect(got.length).toBeLessThan(big.length);
    expect(got.equals(big.subarray(0, got.length))).toBe(true);
    await settle(() => openFds() <= before);
    expect(openFds()).toBeLessThanOrEqual(before);
  });

  it.each([
    ['send()', 'more', 10],
    ['send()', 'fewer', -10],
    ['stream', 'more', 10],
    ['stream', 'fewer', -10],
    ['stream', 'one more', 1],
    ['stream', 'one fewer', -1],
  ])(
    'a store whose %s gives %s bytes than it declares gets the connection closed, never a longer body',
    async (way, _what, extra) => {
      const store = t.server.stores.get('local')!;
      const original = store.get.bind(store);
      const lie = () => Buffer.concat([data, randomBytes(Math.max(0, extra))]).subarray(0, data.length + extra);
      // One answer from a store that lies (the file store cannot: it reads exactly the range).
      store.get = async (uri, options) => {
        const result = await original(uri, options);
        if (way === 'stream') {
          result.stream.destroy();
          // In two chunks, the second crossing the declared length.
          const bytes = lie();
          const half = Math.floor(bytes.length / 2);
          return { size: result.size, stream: Readable.from([bytes.subarray(0, half), bytes.subarray(half)]) };
        }
        return {
          ...result,
          send: async (destination) => {
            result.stream.destroy();
            const bytes = lie();
            await new Promise<void>((resolve, reject) => destination.write(bytes, (e) => (e ? reject(e) : resolve())));
          },
        };
      };
      try {
        // Either no answer at all (the first write was refused before the headers left) or a body
        // cut short: never the declared length, never more.
        const res = await openDownload(id).catch((error: Error) => error);
        if (res instanceof Error) expect(res.message).toMatch(/socket hang up|ECONNRESET/);
        else {
          expect(res.headers['content-length']).toBe(String(data.length));
          const received: Buffer[] = [];
          const outcome = await new Promise<string>((resolve) => {
            res.on('data', (chunk: Buffer) => received.push(chunk));
            res.on('end', () => resolve(res.complete ? 'end' : 'cut'));
            res.on('error', () => resolve('error'));
            res.on('aborted', () => resolve('aborted'));
            res.resume();
          });
          expect(outcome).not.toBe('end');
          expect(Buffer.concat(received).length).toBeLessThan(data.length);
        }
      } finally {
        store.get = original;
      }
      // The server goes on serving.
      expect((await get(id, { range: 'bytes=0-9' })).body.equals(data.subarray(0, 10))).toBe(true);
    },
  );
});
