import { createHash, randomBytes } from 'node:crypto';
import { Agent, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_HASH_HEADER } from '../../core/auth/signing.js';
import { startTestServer, type TestServer } from '../support/api-server.js';
import { cutOffUpload, rawRequest, type RawResponse } from '../support/raw-http.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');
const json = (body: unknown) => Buffer.from(JSON.stringify(body));
const jsonHeaders = { 'content-type': 'application/json' };
type Wire = Record<string, unknown>;
const imageOf = (r: RawResponse) => (r.json() as { image: Wire }).image;

async function waitFor(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('image service API', () => {
  let t: TestServer;
  let origin: Server;
  let originUrl: string;
  const originData = randomBytes(200_000);

  beforeAll(async () => {
    t = await startTestServer();
    origin = createServer((req, res) => {
      if (req.url !== '/images/debian.qcow2') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': String(originData.length), etag: `"${md5(originData)}"` });
      res.end(req.method === 'HEAD' ? undefined : originData);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await t.close();
    await new Promise((r) => origin.close(r));
  });

  const post = (as: 'admin' | 'bob' | 'carol', image: Wire) =>
    rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: jsonHeaders,
      body: json({ image }),
      as: t.users[as],
    });
  const storeFiles = async () => (await readdir(join(t.dataDir, 'images'))).sort();

  describe('routes', () => {
    it('POST /images registers metadata (locked) and GET /images/:id/meta returns it', async () => {
      const created = await post('bob', {
        name: 'meta-only',
        architecture: 'x86_64',
        format: 'qcow2',
        os_distro: 'debian',
        color: 'red',
        tags: ['a'],
      });
      expect(created.status).toBe(201);
      const image = imageOf(created);
      expect(image).toMatchObject({
        name: 'meta-only',
        architecture: 'x86_64',
        status: 'locked',
        format: 'qcow2',
        os_distro: 'debian',
        color: 'red',
        tags: ['a'],
        owner: 'bob',
        access: 'private',
        revision: 1,
      });
      expect(created.headers['location']).toBe(`${t.url}/images/${String(image['_id'])}`);
      const meta = await rawRequest(t.url, {
        method: 'GET',
        path: `/images/${String(image['_id'])}/meta`,
        as: t.users.bob,
      });
      expect(imageOf(meta)).toEqual(image);
    });

    it('POST with a streamed body uploads: available, with size and checksums computed by the server', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 3);
      const image = await t
        .client('bob')
        .add(
          { name: 'uploaded', architecture: 'aarch64', format: 'raw' },
          { stream: Readable.from([data]), size: data.length },
        );
      // The sha256 is computed on the request path; md5 and sha512 after it, from the stored bytes.
      expect(image).toMatchObject({ status: 'available', size: data.length, store: 'local' });
      expect(image['checksums']).toEqual({ sha256: sha256(data) });
      expect(image['checksums_pending']).toEqual(['md5', 'sha512']);
      expect(image['location']).toBeUndefined(); // a server path is for admins only
      const id = String(image['_id']);
      let done = await t.client('bob').meta(id);
      for (let i = 0; i < 200 && done['checksums_pending'] !== undefined; i++) {
        await new Promise((r) => setTimeout(r, 25));
        done = await t.client('bob').meta(id);
      }
      expect(done).toMatchObject({ status: 'available', checksum: md5(data) });
      expect(done['checksums']).toEqual({ md5: md5(data), sha256: sha256(data), sha512: sha512(data) });
      expect(done['checksums_pending']).toBeUndefined();
      const admin = await t.client('admin').meta(id);
      expect(String(admin['location'])).toMatch(/^file:\/\//);
    });

    it(
      'PUT uploads the file of a registered image, ' + 'GET streams it back, HEAD gives the metadata as headers',
      async () => {
        const registered = imageOf(await post('bob', { name: 'later-upload', architecture: 'x86_64' }));
        const id = String(registered['_id']);
        const data = randomBytes(1024 * 1024 + 1);
        const updated = await t
          .client('bob')
          .update(id, { format: 'raw' }, { stream: Readable.from([data]), size: data.length });
        expect(updated).toMatchObject({ status: 'available', size: data.length, format: 'raw' });
        const got = await rawRequest(t.url, { method: 'GET', path: `/images/${id}`, as: t.users.bob });
        expect(got.status).toBe(200);
        expect(got.body.equals(data)).toBe(true);
        expect(got.headers['content-length']).toBe(String(data.length));
        expect(got.headers['x-image-meta-name']).toBe('later-upload');
        const head = await rawRequest(t.url, { method: 'HEAD', path: `/images/${id}`, as: t.users.bob });
        expect(head.status).toBe(200);
        expect(head.body.length).toBe(0);
        expect(head.headers).toMatchObject({
          'x-image-meta-_id': id,
          'x-image-meta-status': 'available',
          'x-image-meta-sha256': sha256(data),
          'x-image-meta-size': String(data.length),
        });
      },
    );

    it('keeps a keep-alive connection across HEAD answers, with and without bits', async () => {
      // A HEAD answer without a length made Node's client close the connection: each HEAD then
      // cost a new connection, and under load the reconnections starved other clients.
      const data = randomBytes(10_000);
      const withBits = await t
        .client('bob')
        .add({ name: 'head-kept', architecture: 'x86_64' }, { stream: Readable.from([data]), size: data.length });
      const noBits = imageOf(await post('bob', { name: 'head-no-bits', architecture: 'x86_64' }));
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const ask = (method: string, id: unknown) =>
          rawRequest(t.url, { method, path: `/images/${String(id)}`, as: t.users.bob, agent });
        const answers = [
          await ask('HEAD', withBits['_id']),
          await ask('HEAD', noBits['_id']),
          await ask('HEAD', withBits['_id']),
          await ask('GET', withBits['_id']),
        ];
        expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
        expect(answers[0]!.headers['content-length']).toBe(String(data.length));
        expect(answers[1]!.headers['content-length']).toBe('0');
        expect(answers[3]!.body.equals(data)).toBe(true);
        expect(new Set(answers.map((a) => a.localPort)).size).toBe(1);
      } finally {
        agent.destroy();
      }
    });

    it('serves byte ranges (206), suffix ranges, and 416 for unsatisfiable ones', async () => {
      const data = randomBytes(100_000);
      const image = await t
        .client('bob')
        .add({ name: 'ranged', architecture: 'x86_64' }, { stream: Readable.from([data]), size: data.length });
      const path = `/images/${String(image['_id'])}`;
      const part = await rawRequest(t.url, { method: 'GET', path, headers: { range: 'bytes=10-19' }, as: t.users.bob });
      expect(part.status).toBe(206);
      expect(part.headers['content-range']).toBe(`bytes 10-19/${data.length}`);
      expect(part.body.equals(data.subarray(10, 20))).toBe(true);
      const suffix = await rawRequest(t.url, { method: 'GET', path, headers: { range: 'bytes=-5' }, as: t.users.bob });
      expect(suffix.body.equals(data.subarray(-5))).toBe(true);
      const beyond = await rawRequest(t.url, {
        method: 'GET',
        path,
        headers: { range: 'bytes=100000-' },
        as: t.users.bob,
      });
      expect(beyond.status).toBe(416);
      expect(beyond.headers['content-range']).toBe(`bytes */${data.length}`);
      const multi = await rawRequest(t.url, {
        method: 'GET',
        path,
        headers: { range: 'bytes=0-1,5-6' },
        as: t.users.bob,
      });
      expect(multi.status).toBe(200);
      expect(multi.body.length).toBe(data.length);
    });

    it('PUT changes metadata (JSON or headers), honours If-Match, and refuses read-only fields', async () => {
      const image = imageOf(
        await post('bob', {
          name: 'to-update',
          architecture: 'x86_64',
          color: 'red',
          os_distro: 'debian',
          os_version: '12',
        }),
      );
      const path = `/images/${String(image['_id'])}`;
      const changed = await rawRequest(t.url, {
        method: 'PUT',
        path,
        headers: jsonHeaders,
        body: json({ image: { name: 'updated', color: null, os_version: '13', min_ram: 512 } }),
        as: t.users.bob,
      });
      expect(changed.status).toBe(200);
      const after = imageOf(changed);
      expect(after).toMatchObject({
        name: 'updated',
        os_distro: 'debian',
        os_version: '13',
        min_ram: 512,
        revision: 2,
      });
      expect(after['color']).toBeUndefined();
      const viaHeaders = await rawRequest(t.url, {
        method: 'PUT',
        path,
        headers: { 'x-image-meta-access': 'private', 'x-image-meta-name': encodeURIComponent('Débian ✓') },
        as: t.users.bob,
      });
      expect(imageOf(viaHeaders)).toMatchObject({ access: 'private', name: 'Débian ✓', revision: 3 });
      const stale = await rawRequest(t.url, {
        method: 'PUT',
        path,
        headers: { ...jsonHeaders, 'if-match': '"1"' },
        body: json({ image: { name: 'x' } }),
        as: t.users.bob,
      });
      expect(stale.status).toBe(409);
      const readOnly = await rawRequest(t.url, {
        method: 'PUT',
        path,
        headers: jsonHeaders,
        body: json({ image: { status: 'available', size: 5 } }),
        as: t.users.bob,
      });
      expect(readOnly.status).toBe(400);
      expect((readOnly.json() as { message: string }).message).toMatch(/status is set by visor.*size is set by visor/);
    });

    it('DELETE keeps the image restorable for lifecycle.softDelete (7 days by default); purge removes it', async () => {
      const data = randomBytes(10_000);
      const image = await t
        .client('bob')
        .add({ name: 'doomed', architecture: 'x86_64' }, { stream: Readable.from([data]), size: data.length });
      const before = await storeFiles();
      const deleted = await rawRequest(t.url, {
        method: 'DELETE',
        path: `/images/${String(image['_id'])}`,
        as: t.users.bob,
      });
      expect(deleted.status).toBe(200);
      expect(imageOf(deleted)).toMatchObject({ _id: image['_id'], status: 'deleted' });
      expect(
        (await rawRequest(t.url, { method: 'GET', path: `/images/${String(image['_id'])}/meta`, as: t.users.bob }))
          .status,
      ).toBe(404);
      // The safety net: the record and the bits stay until the period is over or the image is purged.
      expect((await storeFiles()).length).toBe(before.length);
      expect(imageOf(deleted)['purge_after']).toBeDefined();
      const days = (Date.parse(String(imageOf(deleted)['purge_after'])) - Date.now()) / 86_400_000;
      expect(days).toBeGreaterThan(6.99);
      expect(days).toBeLessThanOrEqual(7);
      const purged = await rawRequest(t.url, {
        method: 'POST',
        path: `/images/${String(image['_id'])}/purge`,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from('{}'),
        as: t.users.bob,
      });
      expect(purged.status).toBe(200);
      expect((await storeFiles()).length).toBe(before.length - 1);
    });

    it('references an HTTP location: size and checksum from its headers, bits streamed from there', async () => {
      const location = `${originUrl}/images/debian.qcow2`;
      const created = await post('bob', { name: 'referenced', architecture: 'x86_64', format: 'raw', location });
      expect(created.status).toBe(201);
      const image = imageOf(created);
      expect(image).toMatchObject({
        status: 'available',
        store: 'web',
        size: originData.length,
        checksum: md5(originData),
        location: `${originUrl}/images/debian.qcow2`,
      });
      const got = await rawRequest(t.url, { method: 'GET', path: `/images/${String(image['_id'])}`, as: t.users.bob });
      expect(got.body.equals(originData)).toBe(true);
      const missing = await post('bob', { name: 'gone', architecture: 'x86_64', location: `${originUrl}/nothing` });
      expect(missing.status).toBe(404);
    });

    it('refuses to download an image that has no file yet', async () => {
      const image = imageOf(await post('bob', { name: 'no-file', architecture: 'x86_64' }));
      const got = await rawRequest(t.url, { method: 'GET', path: `/images/${String(image['_id'])}`, as: t.users.bob });
      expect(got.status).toBe(409);
      expect((got.json() as { message: string }).message).toMatch(/has no file/);
    });
  });

  describe('listing: brief, detail, filters, sort, paging', () => {
    const names: string[] = [];
    beforeAll(async () => {
      for (let i = 0; i < 7; i++) {
        const name = `list-${String.fromCharCode(103 - i)}`;
        names.push(name);
        await post('carol', {
          name,
          architecture: i % 2 ? 'aarch64' : 'ppc64le',
          format: i % 3 ? 'qcow2' : 'raw',
          flavour: i < 3 ? 'small' : 'big',
          tags: i === 0 ? ['gold'] : [],
        });
      }
    });
    const list = async (query: [string, string][], path = '/images') => {
      const r = await rawRequest(t.url, { method: 'GET', path, query, as: t.users.carol });
      expect(r.status).toBe(200);
      return r;
    };

    it("GET /images gives VISOR's brief fields; /images/detail everything", async () => {
      const brief = (await list([['owner', 'carol']])).json() as { images: Wire[] };
      expect(brief.images).toHaveLength(7);
      for (const image of brief.images)
        expect(Object.keys(image).sort()).toEqual(expect.arrayContaining(['_id', 'architecture', 'name', 'type']));
      expect(
        Object.keys(brief.images[0]!).every((k) =>
          ['_id', 'name', 'architecture', 'type', 'format', 'store', 'size'].includes(k),
        ),
      ).toBe(true);
      const detail = (await list([['owner', 'carol']], '/images/detail')).json() as { images: Wire[] };
      expect(detail.images[0]).toMatchObject({ owner: 'carol', status: 'locked', access: 'private' });
      expect(detail.images[0]).toHaveProperty('created_at');
    });

    it('filters on attributes, custom properties and tags', async () => {
      const names = (r: RawResponse) => (r.json() as { images: Wire[] }).images.map((i) => i['name']).sort();
      expect(
        names(
          await list([
            ['owner', 'carol'],
            ['architecture', 'aarch64'],
          ]),
        ),
      ).toHaveLength(3);
      expect(
        names(
          await list([
            ['owner', 'carol'],
            ['format', 'raw'],
          ]),
        ),
      ).toEqual(['list-a', 'list-d', 'list-g']);
      expect(
        names(
          await list([
            ['owner', 'carol'],
            ['flavour', 'small'],
          ]),
        ),
      ).toEqual(['list-e', 'list-f', 'list-g']);
      expect(names(await list([['tag', 'gold']]))).toEqual(['list-g']);
    });

    it('searches names and tags (any case, no wildcard), only among the images the caller may see', async () => {
      const found = async (as: 'admin' | 'bob' | 'carol', query: [string, string][], path = '/images') => {
        const r = await rawRequest(t.url, { method: 'GET', path, query, as: t.users[as] });
        expect(r.status, JSON.stringify(query)).toBe(200);
        return (r.json() as { images: Wire[] }).images.map((i) => String(i['name'])).sort();
      };
      expect(await found('carol', [['search', 'LIST-']])).toEqual([...names].sort());
      expect(await found('carol', [['search', 'st-a']])).toEqual(['list-a']);
      expect(await found('carol', [['search', 'GOLD']])).toEqual(['list-g']);
      expect(await found('carol', [['search', 'list_']])).toEqual([]);
      expect(await found('carol', [['search', 'list%']])).toEqual([]);
      expect(
        await found('carol', [
          ['search', 'list'],
          ['format', 'raw'],
        ]),
      ).toEqual(['list-a', 'list-d', 'list-g']);
      expect(
        await found('admin', [
          ['search', 'list-'],
          ['owner', 'carol'],
        ]),
      ).toHaveLength(7);
      // Carol's images are private: Bob finds none of them, whatever he types, as if they did not exist.
      expect(await found('bob', [['search', 'list-']])).toEqual([]);
      expect(await found('bob', [['search', 'list-g']])).toEqual(await found('bob', [['search', 'no-such-x']]));
      const matrix = await rawRequest(t.url, {
        method: 'GET',
        path: '/clouds/matrix',
        query: [['search', 'list-']],
        as: t.users.bob,
      });
      expect(matrix.status).toBe(200);
      expect(JSON.stringify(matrix.json())).not.toContain('list-');
      for (const query of [
        [['search', 'x'.repeat(201)]],
        [
          ['search', 'a'],
          ['search', 'b'],
        ],
      ] as [string, string][][]) {
        const r = await rawRequest(t.url, { method: 'GET', path: '/images', query, as: t.users.carol });
        expect(r.status, JSON.stringify(query).slice(0, 80)).toBe(400);
      }
    });

    it('sorts both ways and pages with limit + marker (next and a Link header)', async () => {
      const asc = (
        await list([
          ['owner', 'carol'],
          ['sort', 'name'],
          ['dir', 'asc'],
        ])
      ).json() as { images: Wire[] };
      expect(asc.images.map((i) => i['name'])).toEqual([...names].sort());
      const seen: string[] = [];
      let marker: string | undefined;
      let pages = 0;
      do {
        const r = await list([
          ['owner', 'carol'],
          ['sort', 'name'],
          ['dir', 'desc'],
          ['limit', '3'],
          ...(marker ? ([['marker', marker]] as [string, string][]) : []),
        ]);
        const body = r.json() as { images: Wire[]; next?: string };
        seen.push(...body.images.map((i) => String(i['name'])));
        if (body.next) expect(String(r.headers['link'])).toContain(`marker=${body.next}`);
        marker = body.next;
        pages++;
      } while (marker);
      expect(seen).toEqual([...names].sort().reverse());
      expect(pages).toBe(3);
    });

    it('answers bad query parameters with 400, never 500', async () => {
      for (const query of [
        [['sort', 'nonsense field']],
        [['dir', 'sideways']],
        [['limit', 'ten']],
        [['limit', '0']],
        [['marker', 'not-an-id']],
        [['bad key!', 'x']],
        [['size', 'big']],
      ] as [string, string][][]) {
        const r = await rawRequest(t.url, { method: 'GET', path: '/images', query, as: t.users.carol });
        expect(r.status, JSON.stringify(query)).toBe(400);
        expect(r.json()).toMatchObject({ code: 400, message: expect.any(String) });
      }
    });
  });

  describe('authentication', () => {
    const bob = () => t.users.bob;
    const expectCode = (r: RawResponse, status: number, message: RegExp) => {
      expect(r.status).toBe(status);
      expect(r.json()).toMatchObject({ code: status, message: expect.stringMatching(message) });
    };

    it('refuses unsigned requests with 401 and a challenge', async () => {
      const r = await rawRequest(t.url, { method: 'GET', path: '/images' });
      expectCode(r, 401, /not signed/);
      expect(r.headers['www-authenticate']).toBe('VISOR-HMAC-SHA256');
    });
    it('refuses a malformed Authorization header and a missing date', async () => {
      expectCode(
        await rawRequest(t.url, { method: 'GET', path: '/images', headers: { authorization: 'VISOR abc:def' } }),
        401,
        /malformed Authorization/,
      );
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: bob(),
          tamper: (s) => delete s.headers['x-visor-date'],
        }),
        401,
        /x-visor-date/,
      );
    });
    it('refuses an unknown access key with 401', async () => {
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: { accessKey: 'AAAAAAAAAAAAAAAAAAAA', secretKey: 'x' },
        }),
        401,
        /unknown access key/,
      );
    });
    it('refuses a forged signature (wrong secret) with 403', async () => {
      expectCode(
        await rawRequest(t.url, { method: 'GET', path: '/images', as: { ...bob(), secretKey: 'guessed' } }),
        403,
        /signature does not match/,
      );
    });
    it('refuses requests altered after signing: path, query, metadata header, body', async () => {
      const image = imageOf(await post('bob', { name: 'target', architecture: 'x86_64' }));
      const path = `/images/${String(image['_id'])}`;
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: bob(),
          tamper: (s) => (s.path = '/images/detail'),
        }),
        403,
        /signature/,
      );
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          query: [['owner', 'bob']],
          as: bob(),
          tamper: (s) => (s.query = [['owner', 'carol']]),
        }),
        403,
        /signature/,
      );
      expectCode(
        await rawRequest(t.url, {
          method: 'PUT',
          path,
          headers: { 'x-image-meta-name': 'mine' },
          as: bob(),
          tamper: (s) => (s.headers['x-image-meta-name'] = 'evil'),
        }),
        403,
        /signature/,
      );
      const body = json({ image: { name: 'signed' } });
      expectCode(
        await rawRequest(t.url, {
          method: 'PUT',
          path,
          headers: { ...jsonHeaders, [CONTENT_HASH_HEADER]: sha256(body) },
          body: json({ image: { name: 'swapped' } }),
          as: bob(),
        }),
        403,
        /does not match the signed/,
      );
      expect(imageOf(await rawRequest(t.url, { method: 'GET', path: `${path}/meta`, as: bob() }))['name']).toBe(
        'target',
      );
    });
    it('refuses expired requests and requests from the future (outside the clock-skew window) with 403', async () => {
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: bob(),
          signedAt: new Date(Date.now() - 10 * 60_000),
        }),
        403,
        /away from the server's clock/,
      );
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: bob(),
          signedAt: new Date(Date.now() + 10 * 60_000),
        }),
        403,
        /away from the server's clock/,
      );
      expect(
        (
          await rawRequest(t.url, {
            method: 'GET',
            path: '/images',
            as: bob(),
            signedAt: new Date(Date.now() - 60_000),
          })
        ).status,
      ).toBe(200);
    });
    it('refuses a replayed request with 403, while identical fresh requests pass', async () => {
      let captured: Record<string, string> = {};
      const first = await rawRequest(t.url, {
        method: 'GET',
        path: '/images',
        query: [['name', 'replay']],
        as: bob(),
        tamper: (s) => (captured = { ...s.headers }),
      });
      expect(first.status).toBe(200);
      const again = await rawRequest(t.url, {
        method: 'GET',
        path: '/images',
        query: [['name', 'replay']],
        headers: captured,
      });
      expectCode(again, 403, /replayed/);
      for (let i = 0; i < 3; i++)
        expect(
          (await rawRequest(t.url, { method: 'GET', path: '/images', query: [['name', 'replay']], as: bob() })).status,
        ).toBe(200);
    });
    it('refuses a missing or malformed nonce', async () => {
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: bob(),
          tamper: (s) => delete s.headers['x-visor-nonce'],
        }),
        401,
        /x-visor-nonce/,
      );
      expectCode(
        await rawRequest(t.url, { method: 'GET', path: '/images', headers: { 'x-visor-nonce': 'short' }, as: bob() }),
        401,
        /x-visor-nonce/,
      );
    });
    it('refuses a missing content hash', async () => {
      expectCode(
        await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          as: bob(),
          tamper: (s) => delete s.headers[CONTENT_HASH_HEADER],
        }),
        403,
        /signature/,
      );
    });
  });

  describe('visibility and ownership', () => {
    let privateId: string;
    let publicId: string;
    let sharedId: string;
    beforeAll(async () => {
      privateId = String(
        imageOf(await post('bob', { name: 'bobs-secret', architecture: 'x86_64', access: 'private' }))['_id'],
      );
      publicId = String(
        imageOf(await post('bob', { name: 'bobs-public', architecture: 'x86_64', access: 'public' }))['_id'],
      );
      sharedId = String(
        imageOf(
          await post('bob', { name: 'bobs-shared', architecture: 'x86_64', access: 'shared', members: ['carol'] }),
        )['_id'],
      );
    });

    it('hides a private image from everyone but its owner and admins', async () => {
      const seenBy = async (who: 'bob' | 'carol' | 'admin') =>
        (await t.client(who).list('brief', { owner: 'bob' })).map((i) => i['_id']);
      expect(await seenBy('bob')).toContain(privateId);
      expect(await seenBy('admin')).toContain(privateId);
      expect(await seenBy('carol')).not.toContain(privateId);
      for (const [method, path] of [
        ['GET', `/images/${privateId}/meta`],
        ['HEAD', `/images/${privateId}`],
        ['GET', `/images/${privateId}`],
        ['DELETE', `/images/${privateId}`],
      ]) {
        expect(
          (await rawRequest(t.url, { method: method!, path: path!, as: t.users.carol })).status,
          `${method} ${path}`,
        ).toBe(404);
      }
      const put = await rawRequest(t.url, {
        method: 'PUT',
        path: `/images/${privateId}`,
        headers: jsonHeaders,
        body: json({ image: { name: 'stolen' } }),
        as: t.users.carol,
      });
      expect(put.status).toBe(404);
      const detail = (await rawRequest(t.url, { method: 'GET', path: '/images/detail', as: t.users.carol })).json() as {
        images: Wire[];
      };
      expect(detail.images.some((i) => i['_id'] === privateId)).toBe(false);
    });

    it('shows a shared image to its members', async () => {
      expect(
        (await rawRequest(t.url, { method: 'GET', path: `/images/${sharedId}/meta`, as: t.users.carol })).status,
      ).toBe(200);
      expect((await t.client('carol').list('brief', { owner: 'bob' })).map((i) => i['_id'])).toContain(sharedId);
    });

    it('lets others read a public image but not change or delete it', async () => {
      expect(
        (await rawRequest(t.url, { method: 'GET', path: `/images/${publicId}/meta`, as: t.users.carol })).status,
      ).toBe(200);
      const put = await rawRequest(t.url, {
        method: 'PUT',
        path: `/images/${publicId}`,
        headers: jsonHeaders,
        body: json({ image: { name: 'mine now' } }),
        as: t.users.carol,
      });
      expect(put.status).toBe(403);
      expect(
        (await rawRequest(t.url, { method: 'DELETE', path: `/images/${publicId}`, as: t.users.carol })).status,
      ).toBe(403);
      expect(
        (
          await rawRequest(t.url, {
            method: 'PUT',
            path: `/images/${publicId}`,
            headers: jsonHeaders,
            body: json({ image: { name: 'admin did it' } }),
            as: t.users.admin,
          })
        ).status,
      ).toBe(200);
    });

    it('lets only admins set an owner', async () => {
      expect((await post('carol', { name: 'x', architecture: 'x86_64', owner: 'bob' })).status).toBe(403);
      expect(imageOf(await post('admin', { name: 'for-bob', architecture: 'x86_64', owner: 'bob' }))['owner']).toBe(
        'bob',
      );
    });
  });

  describe('uploads that go wrong keep nothing', () => {
    it('a POST cut off midway leaves no image and no bytes', async () => {
      const before = await storeFiles();
      const count = async () => (await t.client('admin').list('brief', { name: 'cut-off-post' })).length;
      await cutOffUpload(t.url, {
        method: 'POST',
        path: '/images',
        as: t.users.bob,
        declared: 20 * 1024 * 1024,
        sendBytes: 3 * 1024 * 1024,
        metaHeaders: { 'x-image-meta-name': 'cut-off-post', 'x-image-meta-architecture': 'x86_64' },
      });
      await waitFor(async () => (await count()) === 0 && (await storeFiles()).join() === before.join());
      expect(await storeFiles()).toEqual(before);
    });

    it('a PUT cut off midway leaves the image in error, without bytes, and it can be retried', async () => {
      const image = imageOf(await post('bob', { name: 'cut-off-put', architecture: 'x86_64' }));
      const id = String(image['_id']);
      const before = await storeFiles();
      await cutOffUpload(t.url, {
        method: 'PUT',
        path: `/images/${id}`,
        as: t.users.bob,
        declared: 20 * 1024 * 1024,
        sendBytes: 2 * 1024 * 1024,
      });
      await waitFor(async () => (await t.client('bob').meta(id))['status'] === 'error');
      expect(await storeFiles()).toEqual(before);
      const data = randomBytes(4096);
      const retried = await t.client('bob').update(id, {}, { stream: Readable.from([data]), size: data.length });
      expect(retried).toMatchObject({ status: 'available', size: 4096 });
    });

    it('a checksum the bytes do not match is refused, keeping nothing', async () => {
      const before = await storeFiles();
      const data = randomBytes(50_000);
      const r = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: {
          'content-type': 'application/octet-stream',
          'x-image-meta-name': 'liar',
          'x-image-meta-architecture': 'x86_64',
          'x-image-meta-checksum': 'f'.repeat(32),
        },
        body: data,
        as: t.users.bob,
      });
      expect(r.status).toBe(400);
      expect((r.json() as { message: string }).message).toMatch(/md5 is .* expected f{32}/);
      expect(await t.client('admin').list('brief', { name: 'liar' })).toEqual([]);
      expect(await storeFiles()).toEqual(before);
    });

    it('a body that does not match its signed hash is refused, keeping nothing', async () => {
      const data = randomBytes(50_000);
      const r = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: {
          'content-type': 'application/octet-stream',
          'x-image-meta-name': 'tampered',
          'x-image-meta-architecture': 'x86_64',
          [CONTENT_HASH_HEADER]: sha256(Buffer.from('something else')),
        },
        body: data,
        as: t.users.bob,
      });
      expect(r.status).toBe(400);
      expect(await t.client('admin').list('brief', { name: 'tampered' })).toEqual([]);
    });
  });

  describe('malformed input is a clear 4xx, never a 500', () => {
    const send = (headers: Record<string, string>, body: Buffer, path = '/images', method = 'POST') =>
      rawRequest(t.url, { method, path, headers, body, as: t.users.bob });
    const cases: [string, () => Promise<RawResponse>, number, RegExp][] = [
      ['invalid JSON', () => send(jsonHeaders, Buffer.from('{"image": {"name": ')), 400, /not valid JSON/],
      ['a JSON array', () => send(jsonHeaders, Buffer.from('[1,2]')), 400, /must be an object/],
      ['image not an object', () => send(jsonHeaders, json({ image: 'x' })), 400, /must be an object/],
      [
        'missing name and architecture',
        () => send(jsonHeaders, json({ image: {} })),
        400,
        /name.*architecture|architecture.*name/,
      ],
      [
        'bad enum values, each named',
        () =>
          send(jsonHeaders, json({ image: { name: 'x', architecture: 'sparc', access: 'world', format: 'floppy' } })),
        400,
        /architecture.*access|access.*architecture/,
      ],
      [
        'a read-only field',
        () => send(jsonHeaders, json({ image: { name: 'x', architecture: 'x86_64', _id: 'mine' } })),
        400,
        /_id is set by visor/,
      ],
      [
        'a bad property name',
        () => send(jsonHeaders, json({ image: { name: 'x', architecture: 'x86_64', 'bad key': 1 } })),
        400,
        /not a valid attribute/,
      ],
      [
        'a nested property value',
        () => send(jsonHeaders, json({ image: { name: 'x', architecture: 'x86_64', deep: { a: 1 } } })),
        400,
        /must be text/,
      ],
      [
        'a control character in a name',
        () => send(jsonHeaders, json({ image: { name: 'bad\u0007name', architecture: 'x86_64' } })),
        400,
        /control characters/,
      ],
      [
        'metadata in headers and body',
        () =>
          send({ ...jsonHeaders, 'x-image-meta-name': 'x' }, json({ image: { name: 'x', architecture: 'x86_64' } })),
        400,
        /either in the JSON body or in x-image-meta/,
      ],
      [
        'an unsupported content type',
        () => send({ 'content-type': 'text/plain' }, Buffer.from('hello')),
        415,
        /Content-Type/,
      ],
      [
        'a too-large metadata body',
        () =>
          send(jsonHeaders, json({ image: { name: 'x', architecture: 'x86_64', big: 'x'.repeat(2 * 1024 * 1024) } })),
        413,
        /too large/,
      ],
      [
        'a non-numeric min_ram header',
        () =>
          send(
            {
              'content-type': 'application/octet-stream',
              'x-image-meta-name': 'x',
              'x-image-meta-architecture': 'x86_64',
              'x-image-meta-min_ram': 'lots',
            },
            Buffer.from('data'),
          ),
        400,
        /minRam/,
      ],
      [
        'a bad If-Match',
        () =>
          rawRequest(t.url, {
            method: 'PUT',
            path: '/images/00000000-0000-4000-8000-000000000000',
            headers: { ...jsonHeaders, 'if-match': 'yesterday' },
            body: json({ image: {} }),
            as: t.users.bob,
          }),
        400,
        /If-Match must be the image revision/,
      ],
      [
        'an id that is not a uuid',
        () => rawRequest(t.url, { method: 'GET', path: '/images/..%2f..%2fetc%2fpasswd', as: t.users.bob }),
        404,
        /no image/,
      ],
      [
        'an unknown route',
        () => rawRequest(t.url, { method: 'GET', path: '/imagez', as: t.users.bob }),
        404,
        /no route/,
      ],
      [
        'a location that is not http',
        () => send(jsonHeaders, json({ image: { name: 'x', architecture: 'x86_64', location: 'file:///etc/passwd' } })),
        400,
        /must be an http/,
      ],
    ];
    it.each(cases)('%s', async (_name, make, status, message) => {
      const r = await make();
      expect(r.status).toBe(status);
      expect(r.json()).toMatchObject({ code: status, message: expect.stringMatching(message) });
    });
  });

  it('refuses to run without authentication on a non-loopback address', async () => {
    const { openRuntime } = await import('../../agent/runtime/open-runtime.js');
    const { startServer } = await import('../../agent/serve.js');
    const { silentLogger } = await import('../../core/logging/logger.js');
    const { writeFile } = await import('node:fs/promises');
    const file = join(t.dataDir, 'noauth.yaml');
    await writeFile(file, `dataDir: ${t.dataDir}/noauth\nserver: { host: 0.0.0.0, auth: { enabled: false } }\n`);
    const runtime = await openRuntime({ configFile: file, env: {}, logger: silentLogger });
    await expect(startServer(runtime, { port: 0 })).rejects.toMatchObject({
      kind: 'config',
      message: expect.stringMatching(/only allowed on a loopback address/),
    });
    await runtime.close();
  });
});
