import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpStore } from '../../core/store/http/http-store.js';
import { rawRequest } from '../support/raw-http.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * SSRF through redirects. The "internal" server (127.0.0.1) holds a secret; the "public" origin
 * (127.0.0.2, let through by allowNetworks as a stand-in for a public address) answers with
 * redirects to internal, link-local, reserved and documentation addresses, in every spelling.
 * Every hop must be refused; the secret must never reach the caller.
 */
const SECRET = `internal-secret-${randomBytes(8).toString('hex')}`;
const image = randomBytes(64 * 1024);

async function listen(server: Server, host: string): Promise<number> {
  await new Promise<void>((r) => server.listen(0, host, r));
  return (server.address() as AddressInfo).port;
}

describe('SSRF: every redirect hop passes the address check', () => {
  let internal: Server;
  let origin: Server;
  let internalPort: number;
  let base: string;
  let hits = 0;
  let turned = false;
  let t: SecureServer;

  const targets = (): Record<string, string> => ({
    loopback: `http://127.0.0.1:${internalPort}/secret`,
    'loopback by name': `http://localhost:${internalPort}/secret`,
    'loopback, decimal': `http://2130706433:${internalPort}/secret`,
    'loopback, hex': `http://0x7f.0.0.1:${internalPort}/secret`,
    'loopback, IPv4-mapped IPv6': `http://[::ffff:127.0.0.1]:${internalPort}/secret`,
    'loopback, IPv4-compatible IPv6': `http://[::127.0.0.1]:${internalPort}/secret`,
    'IPv6 loopback': `http://[::1]:${internalPort}/secret`,
    'cloud metadata': 'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
    'cloud metadata, IPv6-mapped': 'http://[::ffff:169.254.169.254]/latest/meta-data/',
    'private 10/8': 'http://10.1.2.3/x',
    'private 192.168/16': 'http://192.168.1.1/x',
    'CGNAT 100.64/10': 'http://100.64.0.1/x',
    'TEST-NET-1 192.0.2/24': 'http://192.0.2.10/x',
    'TEST-NET-2 198.51.100/24': 'http://198.51.100.7/x',
    'TEST-NET-3 203.0.113/24': 'http://203.0.113.9/x',
    'IETF 192.0.0/24': 'http://192.0.0.8/x',
    'benchmark 198.18/15': 'http://198.19.255.1/x',
    multicast: 'http://224.0.0.1/x',
    reserved: 'http://240.0.0.1/x',
    broadcast: 'http://255.255.255.255/x',
    'this network': 'http://0.0.0.0:1/x',
    'unique local IPv6': 'http://[fd00::1]/x',
    'link-local IPv6': 'http://[fe80::1]/x',
    'NAT64 of loopback': 'http://[64:ff9b::7f00:1]/x',
    '6to4 of private': 'http://[2002:a00:1::1]/x',
    'IPv6 documentation': 'http://[2001:db8::1]/x',
  });

  beforeAll(async () => {
    internal = createServer((req, res) => {
      hits++;
      res.writeHead(200, { 'content-length': String(SECRET.length) }).end(req.method === 'HEAD' ? undefined : SECRET);
    });
    internalPort = await listen(internal, '127.0.0.1');
    origin = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const to = url.searchParams.get('to');
      if (url.pathname === '/image')
        return void res
          .writeHead(200, { 'content-length': String(image.length) })
          .end(req.method === 'HEAD' ? undefined : image);
      if (url.pathname === '/hop') return void res.writeHead(302, { location: '/image' }).end();
      if (url.pathname === '/chain') {
        const n = Number(url.searchParams.get('n'));
        return void res.writeHead(302, { location: n > 0 ? `/chain?n=${n - 1}` : '/image' }).end();
      }
      // HEAD says "an image", GET redirects: visor reads the content at registration (to inspect
      // it), so the reference is refused then. /flip answers GET honestly until it has `turned`:
      // the reference registers, and the download must still be refused.
      if (url.pathname === '/flip' || url.pathname === '/flip-now') {
        const length = { 'content-length': String(SECRET.length) };
        if (req.method === 'HEAD') return void res.writeHead(200, length).end();
        if (url.pathname === '/flip' && !turned) {
          return void res.writeHead(200, length).end(Buffer.alloc(SECRET.length));
        }
        return void res.writeHead(302, { location: to ?? '' }).end();
      }
      if (url.pathname === '/redirect' && to)
        return void res.writeHead(Number(url.searchParams.get('status') ?? 302), { location: to }).end();
      res.writeHead(404).end();
    });
    const originPort = await listen(origin, '127.0.0.2');
    base = `http://127.0.0.2:${originPort}`;
    t = await startSecureServer({
      yaml: [
        'stores:',
        '  local: { type: file }',
        `  web: { type: http, options: { allowNetworks: ['127.0.0.2/32'] } }`,
        'defaultStore: local',
        'server: { host: 127.0.0.1 }',
      ].join('\n'),
    });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => internal.close(r));
    await new Promise((r) => origin.close(r));
  });

  const redirect = (to: string, status = 302) => `${base}/redirect?status=${status}&to=${encodeURIComponent(to)}`;

  it('follows a redirect within the allowed origin (the check does not refuse everything)', async () => {
    const store = new HttpStore({ allowNetworks: ['127.0.0.2/32'] });
    const got = await store.get(`${base}/hop`);
    expect((await buffer(got.stream)).equals(image)).toBe(true);
    await store.close();
  });

  it('refuses the internal server when named directly (positive control of the setup)', async () => {
    const store = new HttpStore({ allowNetworks: ['127.0.0.2/32'] });
    await expect(store.head(targets()['loopback']!)).rejects.toMatchObject({ kind: 'forbidden' });
    await store.close();
  });

  it.each([301, 302, 303, 307, 308])(
    'refuses every private, reserved or local target of a %i redirect, in every spelling',
    async (status) => {
      const store = new HttpStore({ allowNetworks: ['127.0.0.2/32'] });
      const before = hits;
      for (const [name, target] of Object.entries(targets())) {
        const error = await store.get(redirect(target, status)).then(
          async (r) => `followed: ${(await buffer(r.stream)).toString()}`,
          (e: unknown) => e,
        );
        expect(error, `${name}: ${target}`).toMatchObject({ kind: 'forbidden' });
      }
      expect(hits - before).toBe(0);
      await store.close();
    },
  );

  it('refuses redirects to other schemes, and too many hops', async () => {
    const store = new HttpStore({ allowNetworks: ['127.0.0.2/32'], maxRedirects: 3 });
    await expect(store.head(redirect('file:///etc/passwd'))).rejects.toMatchObject({
      kind: 'forbidden',
      message: expect.stringMatching(/file:/),
    });
    await expect(store.head(redirect('gopher://127.0.0.1:6379/_INFO'))).rejects.toMatchObject({ kind: 'forbidden' });
    await expect(store.head(`${base}/chain?n=2`)).resolves.toMatchObject({ size: image.length });
    await expect(store.head(`${base}/chain?n=5`)).rejects.toMatchObject({
      kind: 'invalidResponse',
      message: expect.stringMatching(/redirects more than 3 times/),
    });
    await store.close();
  });

  it('through the API: a location redirecting inward is refused at registration and keeps nothing', async () => {
    const before = hits;
    for (const target of Object.values(targets()).slice(0, 9)) {
      const body = Buffer.from(
        JSON.stringify({ image: { name: 'ssrf', architecture: 'x86_64', location: redirect(target) } }),
      );
      const r = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: { 'content-type': 'application/json' },
        body,
        as: t.users.bob,
      });
      expect(r.status, target).toBe(403);
      expect(r.body.toString()).not.toContain(SECRET);
    }
    expect(hits - before).toBe(0);
    const listed = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: [['name', 'ssrf']],
      as: t.users.admin,
    });
    expect((listed.json() as { images: unknown[] }).images).toEqual([]);
  });

  it('through the API: a reference whose GET (not HEAD) redirects inward is refused at registration', async () => {
    const before = hits;
    for (const target of [targets()['loopback']!, targets()['cloud metadata']!]) {
      const location = `${base}/flip-now?to=${encodeURIComponent(target)}`;
      const r = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify({ image: { name: 'flip-now', architecture: 'x86_64', location } })),
        as: t.users.bob,
      });
      expect(r.status, target).toBe(403);
      expect(r.body.toString()).not.toContain(SECRET);
    }
    expect(hits - before).toBe(0);
    const listed = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: [['name', 'flip-now']],
      as: t.users.admin,
    });
    expect((listed.json() as { images: unknown[] }).images).toEqual([]);
  });

  it('through the API: a reference whose GET turns to redirect inward after registration is never served', async () => {
    const before = hits;
    for (const target of [
      targets()['loopback']!,
      targets()['loopback, IPv4-mapped IPv6']!,
      targets()['cloud metadata']!,
    ]) {
      turned = false;
      const body = Buffer.from(
        JSON.stringify({
          image: {
            name: 'flip',
            architecture: 'x86_64',
            access: 'public',
            location: `${base}/flip?to=${encodeURIComponent(target)}`,
          },
        }),
      );
      const created = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: { 'content-type': 'application/json' },
        body,
        as: t.users.bob,
      });
      expect(created.status).toBe(201);
      const id = (created.json() as { image: { _id: string } }).image._id;
      turned = true;
      for (const range of [undefined, 'bytes=0-9']) {
        const got = await rawRequest(t.url, {
          method: 'GET',
          path: `/images/${id}`,
          ...(range ? { headers: { range } } : {}),
          as: t.users.carol,
        });
        expect(got.status, `${target} ${range ?? ''}`).toBe(403);
        expect(got.body.toString()).not.toContain(SECRET);
      }
    }
    expect(hits - before).toBe(0);
  });
});
