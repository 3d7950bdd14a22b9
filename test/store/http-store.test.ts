import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpStore } from '../../core/store/http/http-store.js';
import { storeContract } from '../../core/testing/store-contract.js';

/** A small origin server: serves seeded objects, with or without Range support and checksum headers. */
async function origin(options: { ranges?: boolean; checksumHeaders?: boolean } = {}) {
  const objects = new Map<string, Buffer>();
  const server: Server = createServer((req, res) => {
    const data = objects.get(req.url ?? '');
    if (!data) {
      res.writeHead(404).end('no');
      return;
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (options.checksumHeaders) {
      headers['content-md5'] = createHash('md5').update(data).digest('base64');
      headers['x-checksum-sha256'] = createHash('sha256').update(data).digest('hex');
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && options.ranges !== false) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
      res.writeHead(206, {
        ...headers,
        'content-length': String(end - start + 1),
        'content-range': `bytes ${start}-${end}/${data.length}`,
      });
      res.end(req.method === 'HEAD' ? undefined : data.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': String(data.length) });
    res.end(req.method === 'HEAD' ? undefined : data);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let n = 0;
  return {
    seed: async (data: Buffer) => {
      const path = `/objects/${n++}`;
      objects.set(path, data);
      return `${base}${path}`;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

storeContract('http (read-only references)', async () => {
  const server = await origin({ checksumHeaders: true });
  return {
    store: async () => new HttpStore({ allowPrivateNetworks: true }),
    listObjects: async () => [],
    seed: server.seed,
    cleanup: server.close,
  };
});

describe('http store specifics', () => {
  let server: Awaited<ReturnType<typeof origin>>;
  let plain: Awaited<ReturnType<typeof origin>>;
  beforeAll(async () => {
    server = await origin({ checksumHeaders: true });
    plain = await origin({ ranges: false });
  });
  afterAll(async () => {
    await server.close();
    await plain.close();
  });

  it('takes size and checksums from the response headers', async () => {
    const data = randomBytes(5000);
    const uri = await server.seed(data);
    const info = await new HttpStore({ allowPrivateNetworks: true }).head(uri);
    expect(info).toMatchObject({
      size: 5000,
      checksums: {
        md5: createHash('md5').update(data).digest('hex'),
        sha256: createHash('sha256').update(data).digest('hex'),
      },
    });
  });

  it('serves ranges even from a server that ignores Range', async () => {
    const data = randomBytes(300_000);
    const uri = await plain.seed(data);
    const store = new HttpStore({ allowPrivateNetworks: true });
    const got = await store.get(uri, { range: { start: 123_456, end: 200_000 } });
    expect((await buffer(got.stream)).equals(data.subarray(123_456, 200_001))).toBe(true);
    await store.close();
  });

  it('refuses loopback, private and link-local addresses unless allowed (SSRF)', async () => {
    const uri = await server.seed(Buffer.from('internal'));
    const store = new HttpStore();
    for (const target of [
      uri,
      uri.replace('127.0.0.1', 'localhost'),
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/x',
      'http://[::1]/x',
    ]) {
      await expect(store.head(target), target).rejects.toMatchObject({ kind: 'forbidden' });
    }
    await store.close();
  });

  it('never repeats credentials from a URL in an error', async () => {
    const store = new HttpStore({ allowPrivateNetworks: true });
    const error = await store.head('http://user:s3cret-pw@127.0.0.1:1/x').catch((e: Error) => e);
    expect(String((error as Error).message)).not.toContain('s3cret-pw');
    await store.close();
  });
});
