import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify, FaultProxy, rewriteCatalog, type Fault } from '../support/fault-proxy.js';

/**
 * The fault proxy itself (test support the fault and crash suites rely on): the same seed gives
 * the same faults for the same requests, each fault does what it says on the wire, and tokens come
 * back with the image endpoint moved to the proxy. Upstreams here are two bare HTTP servers that
 * count what reaches them.
 */
describe('the fault-injecting proxy', () => {
  let keystone: Server;
  let glance: Server;
  let origins: { keystone: string; glance: string };
  const reached: string[] = [];

  const listen = async (server: Server) => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  beforeAll(async () => {
    keystone = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({
          token: {
            catalog: [
              { type: 'image', endpoints: [{ interface: 'public', url: origins.glance }] },
              { type: 'identity', endpoints: [{ interface: 'public', url: `${origins.keystone}/v3` }] },
            ],
          },
        });
        res.writeHead(201, { 'content-type': 'application/json', 'x-subject-token': 'tok' });
        res.end(body);
      });
    });
    glance = createServer((req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => {
        reached.push(`${req.method} ${req.url} ${bytes}`);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: true, bytes, padding: 'x'.repeat(8192) }));
      });
    });
    origins = { keystone: await listen(keystone), glance: await listen(glance) };
  });
  afterAll(async () => {
    for (const server of [keystone, glance]) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  /** One request through the proxy: status and body, or the error the client saw. */
  const call = (url: string, method = 'GET', body?: Buffer, timeoutMs = 5000) =>
    new Promise<{ status?: number; body?: string; error?: string; ms: number }>((resolve) => {
      const started = Date.now();
      const req = request(
        url,
        { method, agent: false, headers: body ? { 'content-length': body.length } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString(), ms: Date.now() - started }),
          );
          res.on('error', (e) => resolve({ status: res.statusCode!, error: e.message, ms: Date.now() - started }));
          res.on('aborted', () => resolve({ status: res.statusCode!, error: 'aborted', ms: Date.now() - started }));
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error('client timeout')));
      req.on('error', (e) => resolve({ error: e.message, ms: Date.now() - started }));
      req.end(body);
    });

  it('gives the same faults for the same seed and the same requests', async () => {
    const faults: Array<Array<Fault | undefined>> = [];
    for (let round = 0; round < 2; round++) {
      const proxy = await FaultProxy.start({ ...origins, seed: 42, rate: 0.5, weights: { status: 1, slow: 1 } });
      try {
        for (let i = 0; i < 20; i++) await call(`${proxy.glanceUrl}/v2/images/${i}`);
        faults.push(proxy.log.map((e) => e.fault));
      } finally {
        await proxy.close();
      }
    }
    expect(faults[0]!.filter(Boolean).length).toBeGreaterThan(3);
    expect(faults[1]).toEqual(faults[0]);
  });

  it('moves the image endpoint of every token to the proxy, and leaves the rest', async () => {
    const proxy = await FaultProxy.start({ ...origins, seed: 1 });
    try {
      const answer = await call(`${proxy.authUrl}/auth/tokens`, 'POST', Buffer.from('{}'));
      const catalog = (
        JSON.parse(answer.body!) as { token: { catalog: Array<{ type: string; endpoints: Array<{ url: string }> }> } }
      ).token.catalog;
      expect(catalog.find((s) => s.type === 'image')!.endpoints[0]!.url).toBe(proxy.glanceUrl);
      expect(catalog.find((s) => s.type === 'identity')!.endpoints[0]!.url).toBe(`${origins.keystone}/v3`);
    } finally {
      await proxy.close();
    }
    expect(rewriteCatalog('not json', 'http://x')).toBe('not json');
    expect(classify('glance', 'PUT', '/v2/images/abc/file')).toBe('upload');
    expect(classify('glance', 'GET', '/v2/images?limit=5')).toBe('list');
    expect(classify('keystone', 'POST', '/v3/auth/tokens')).toBe('auth');
  });

  it('does what each fault says, on the wire', async () => {
    const proxy = await FaultProxy.start({ ...origins, seed: 7, hangLimitMs: 10_000 });
    const at = (path: string) => `${proxy.glanceUrl}${path}`;
    const upload = Buffer.alloc(256 * 1024, 1);
    try {
      const only = (fault: Fault) => proxy.script(() => true, fault);
      const before = reached.length;
      only({ kind: 'status', status: 503, stage: 'before' });
      expect(await call(at('/v2/images/a'))).toMatchObject({
        status: 503,
        body: expect.stringContaining('fault injected'),
      });
      expect(reached.length).toBe(before);

      only({ kind: 'status', status: 500, stage: 'after' });
      expect(await call(at('/v2/images/b'), 'PATCH', Buffer.from('[]'))).toMatchObject({ status: 500 });
      expect(reached.at(-1)).toBe('PATCH /v2/images/b 2');

      only({ kind: 'reset', stage: 'request', afterBytes: 1000 });
      expect((await call(at('/v2/images/c/file'), 'PUT', upload)).error).toBeDefined();
      expect(reached.at(-1)).toBe('PATCH /v2/images/b 2'); // the cut upload never completed upstream

      only({ kind: 'reset', stage: 'response', afterBytes: 100 });
      const cut = await call(at('/v2/images/d'));
      expect(cut.error).toBeDefined();
      expect(reached.at(-1)).toBe('GET /v2/images/d 0'); // done upstream, answer lost

      only({ kind: 'hang', stage: 'before' });
      const hung = await call(at('/v2/images/e'), 'GET', undefined, 500);
      expect(hung).toMatchObject({ error: 'client timeout' });
      expect(hung.ms).toBeGreaterThanOrEqual(450);

      only({ kind: 'slow', bytesPerSecond: 64 * 1024, latencyMs: 100 });
      const slow = await call(at('/v2/images/f/file'), 'PUT', upload);
      expect(slow).toMatchObject({ status: 200 });
      expect(slow.ms).toBeGreaterThanOrEqual(3000); // 256 KiB up at 64 KiB/s (+ the answer)

      expect(proxy.log.map((e) => e.outcome)).toEqual(['injected', 'injected', 'reset', 'reset', 'hung', 'answered']);
    } finally {
      await proxy.close();
    }
  });
});
