import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { requirePeer } from '../peers/index.js';
import { startTestServer, type TestServer } from '../support/api-server.js';
import { isAccepted, makeDifferencingVhd, makeImageCorpus, type CorpusEntry } from '../support/image-corpus.js';
import { chunkedUpload, rawRequest, type RawResponse } from '../support/raw-http.js';

/**
 * Images are inspected as they are uploaded, through the real API server (test/support
 * api-server.ts): every class of image the format inspector knows is accepted with its format
 * recorded, or refused with a 4xx naming the check — by POST and by PUT, with the length known
 * and chunked, and as an HTTP reference — and a refused image leaves nothing: no record (POST),
 * no available record (PUT), no bytes in the store.
 */
type Wire = Record<string, unknown>;
const imageOf = (r: RawResponse) => (r.json() as { image: Wire }).image;
const statusOf = (entry: CorpusEntry) => ('kind' in entry.expect ? (entry.expect.kind === 'unsafe' ? 422 : 400) : 201);

function metaHeaders(entry: CorpusEntry, name: string): Record<string, string> {
  return {
    'content-type': 'application/octet-stream',
    'x-image-meta-name': name,
    'x-image-meta-architecture': 'x86_64',
    ...(entry.declared ? { 'x-image-meta-format': entry.declared } : {}),
    ...(entry.container ? { 'x-image-meta-container_format': entry.container } : {}),
  };
}

describe('uploads are inspected: unsafe images are refused and nothing of them is kept', () => {
  let skip: string | undefined;
  let t: TestServer;
  let dir: string;
  let corpus: CorpusEntry[] = [];
  let origin: Server;
  let originUrl = '';

  beforeAll(async () => {
    skip = (await requirePeer('qemu-img')).skip;
    t = await startTestServer();
    dir = await mkdtemp(join(tmpdir(), 'visor-upload-inspection-'));
    if (!skip) corpus = await makeImageCorpus(dir);
    // An HTTP server that serves the corpus by index, with Range support (as a web server does).
    origin = createServer((req, res) => {
      const entry = corpus[Number(/^\/(\d+)$/.exec(req.url ?? '')?.[1] ?? -1)];
      if (!entry) return void res.writeHead(404).end();
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (range) {
        const [start, end] = [Number(range[1]), Math.min(Number(range[2]), entry.data.length - 1)];
        res.writeHead(206, {
          'content-length': String(end - start + 1),
          'content-range': `bytes ${start}-${end}/${entry.data.length}`,
        });
        return void res.end(req.method === 'HEAD' ? undefined : entry.data.subarray(start, end + 1));
      }
      res.writeHead(200, { 'content-length': String(entry.data.length), 'accept-ranges': 'bytes' });
      res.end(req.method === 'HEAD' ? undefined : entry.data);
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  }, 600_000);
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => origin?.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };
  const storeFiles = async () => (await readdir(join(t.dataDir, 'images')).catch(() => [] as string[])).sort();
  const named = async (name: string) => t.client('admin').list('detail', { name });
  const label = (entry: CorpusEntry) => entry.name.replace(/[^A-Za-z0-9]+/g, '-').toLowerCase();

  /** What must hold after one upload of `entry` answered `response`. */
  async function checkOutcome(
    entry: CorpusEntry,
    name: string,
    response: RawResponse,
    before: string[],
  ): Promise<void> {
    expect(response.status, `${entry.name}: ${response.body.toString()}`).toBe(statusOf(entry));
    if (isAccepted(entry)) {
      const image = imageOf(response);
      expect(image, entry.name).toMatchObject({
        status: 'available',
        size: entry.data.length,
        format: entry.expect.format,
      });
      if (entry.expect.containerFormat)
        expect(image['container_format'], entry.name).toBe(entry.expect.containerFormat);
      if (entry.expect.virtualSize !== undefined)
        expect(image['virtual_size'], entry.name).toBe(entry.expect.virtualSize);
      const got = await rawRequest(t.url, { method: 'GET', path: `/images/${String(image['_id'])}`, as: t.users.bob });
      expect(got.body.equals(entry.data), entry.name).toBe(true);
      return;
    }
    const expectation = entry.expect as { kind: string; reason: RegExp };
    expect(response.json(), entry.name).toMatchObject({
      code: statusOf(entry),
      message: expect.stringMatching(expectation.reason),
    });
    expect(await named(name), `${entry.name}: a record was left`).toEqual([]);
    expect(await storeFiles(), `${entry.name}: bytes were left`).toEqual(before);
  }

  it('POST with the length known: every class accepted or refused as the inspector says', async (ctx) => {
    need(ctx);
    for (const entry of corpus) {
      const name = `post-${label(entry)}`;
      const before = await storeFiles();
      const response = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: metaHeaders(entry, name),
        body: entry.data,
        as: t.users.bob,
      });
      await checkOutcome(entry, name, response, before);
    }
  }, 300_000);

  it('POST chunked (length unknown): the same verdicts, and refused ones leave nothing', async (ctx) => {
    need(ctx);
    for (const entry of corpus) {
      const name = `chunked-${label(entry)}`;
      const before = await storeFiles();
      const response = await chunkedUpload(t.url, {
        method: 'POST',
        path: '/images',
        as: t.users.bob,
        body: entry.data,
        headers: metaHeaders(entry, name),
        chunkSize: 50_000,
      });
      await checkOutcome(entry, name, response, before);
    }
  }, 300_000);

  it('PUT onto a registered image: refused uploads leave it in error without bytes, never available', async (ctx) => {
    need(ctx);
    for (const entry of corpus.filter((e) => !isAccepted(e))) {
      const meta = metaHeaders(entry, `put-${label(entry)}`);
      const { 'content-type': _, ...fields } = meta;
      const registered = imageOf(
        await rawRequest(t.url, { method: 'POST', path: '/images', headers: fields, as: t.users.bob }),
      );
      const id = String(registered['_id']);
      const before = await storeFiles();
      const response = await rawRequest(t.url, {
        method: 'PUT',
        path: `/images/${id}`,
        headers: { 'content-type': 'application/octet-stream' },
        body: entry.data,
        as: t.users.bob,
      });
      expect(response.status, entry.name).toBe(statusOf(entry));
      expect(response.json(), entry.name).toMatchObject({
        message: expect.stringMatching((entry.expect as { reason: RegExp }).reason),
      });
      const after = await t.client('bob').meta(id);
      expect(after, entry.name).toMatchObject({ status: 'error' });
      expect(after['size'], entry.name).toBeUndefined();
      expect(
        (await rawRequest(t.url, { method: 'GET', path: `/images/${id}`, as: t.users.bob })).status,
        entry.name,
      ).toBe(409);
      expect(await storeFiles(), entry.name).toEqual(before);
    }
  }, 300_000);

  it('PUT of an unsafe image over a good one keeps the good one, available and unchanged', async (ctx) => {
    need(ctx);
    const good = corpus.find((e) => e.name === 'qcow2')!;
    const bad = corpus.find((e) => e.name === 'qcow2 with a backing file')!;
    const created = imageOf(
      await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: metaHeaders(good, 'replace-me'),
        body: good.data,
        as: t.users.bob,
      }),
    );
    const id = String(created['_id']);
    const before = await storeFiles();
    const response = await rawRequest(t.url, {
      method: 'PUT',
      path: `/images/${id}`,
      headers: { 'content-type': 'application/octet-stream' },
      body: bad.data,
      as: t.users.bob,
    });
    expect(response.status).toBe(422);
    expect(await t.client('bob').meta(id)).toMatchObject({
      status: 'available',
      size: good.data.length,
      checksums: created['checksums'],
    });
    const got = await rawRequest(t.url, { method: 'GET', path: `/images/${id}`, as: t.users.bob });
    expect(got.body.equals(good.data)).toBe(true);
    expect(await storeFiles()).toEqual(before);
  });

  it('reads back what it could not keep (a 2 MiB block table); removes a refused image it stored', async (ctx) => {
    need(ctx);
    execFileSync('qemu-img', ['create', '-q', '-f', 'vpc', join(dir, 'huge.vhd'), '1T']);
    const huge = await readFile(join(dir, 'huge.vhd'));
    const good = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: {
        'content-type': 'application/octet-stream',
        'x-image-meta-name': 'huge-vhd',
        'x-image-meta-architecture': 'x86_64',
        'x-image-meta-format': 'vhd',
      },
      body: huge,
      as: t.users.bob,
    });
    expect(good.status).toBe(201);
    expect(imageOf(good)).toMatchObject({ status: 'available', format: 'vhd', virtual_size: 1024 ** 4 });
    const before = await storeFiles();
    const bad = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: {
        'content-type': 'application/octet-stream',
        'x-image-meta-name': 'huge-diff-vhd',
        'x-image-meta-architecture': 'x86_64',
        'x-image-meta-format': 'vhd',
      },
      body: makeDifferencingVhd(huge),
      as: t.users.bob,
    });
    expect(bad.status).toBe(422);
    expect(bad.json()).toMatchObject({ message: expect.stringMatching(/differencing VHD depends on a parent disk/) });
    expect(await named('huge-diff-vhd')).toEqual([]);
    expect(await storeFiles()).toEqual(before);
  });

  it('an HTTP reference is inspected when it is registered: unsafe ones are never registered', async (ctx) => {
    need(ctx);
    for (const [index, entry] of corpus.entries()) {
      const name = `ref-${label(entry)}`;
      const fields = {
        name,
        architecture: 'x86_64',
        location: `${originUrl}/${index}`,
        ...(entry.declared ? { format: entry.declared } : {}),
        ...(entry.container ? { container_format: entry.container } : {}),
      };
      const response = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify({ image: fields })),
        as: t.users.bob,
      });
      expect(response.status, `${entry.name}: ${response.body.toString()}`).toBe(statusOf(entry));
      if (isAccepted(entry)) {
        expect(imageOf(response), entry.name).toMatchObject({
          status: 'available',
          store: 'web',
          format: entry.expect.format,
          size: entry.data.length,
        });
      } else {
        expect(response.json(), entry.name).toMatchObject({
          message: expect.stringMatching((entry.expect as { reason: RegExp }).reason),
        });
        expect(await named(name), entry.name).toEqual([]);
      }
    }
  }, 300_000);

  it('a format change must describe the stored content: a qcow2 cannot be relabelled raw', async (ctx) => {
    need(ctx);
    const qcow2 = corpus.find((e) => e.name === 'qcow2, format not declared')!;
    const created = imageOf(
      await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: metaHeaders(qcow2, 'relabel'),
        body: qcow2.data,
        as: t.users.bob,
      }),
    );
    expect(created).toMatchObject({ format: 'qcow2', container_format: 'bare' });
    const id = String(created['_id']);
    // md5 and sha512 are recorded after the upload (a new revision): the changes below start after that.
    let settled = await t.client('bob').meta(id);
    for (let i = 0; i < 200 && settled['checksums_pending'] !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 50));
      settled = await t.client('bob').meta(id);
    }
    expect(settled['checksums_pending']).toBeUndefined();
    const change = (image: Wire) =>
      rawRequest(t.url, {
        method: 'PUT',
        path: `/images/${id}`,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify({ image })),
        as: t.users.bob,
      });
    const relabel = await change({ format: 'raw' });
    expect(relabel.status).toBe(422);
    expect(relabel.json()).toMatchObject({ message: expect.stringMatching(/declared raw, but the content is qcow2/) });
    expect((await change({ container_format: 'ova' })).status).toBe(422);
    expect(await t.client('bob').meta(id)).toMatchObject({
      format: 'qcow2',
      container_format: 'bare',
      revision: settled['revision'],
    });
    // What the content is stays accepted; other metadata changes are not inspected at all.
    expect((await change({ format: 'qcow2', os_distro: 'debian' })).status).toBe(200);
  });

  it('a format sent with a new file describes that file: applied with it, or not at all', async (ctx) => {
    need(ctx);
    const qcow2 = corpus.find((e) => e.name === 'qcow2')!;
    const raw = corpus.find((e) => e.name === 'raw')!;
    const created = imageOf(
      await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: metaHeaders(qcow2, 'new-format'),
        body: qcow2.data,
        as: t.users.bob,
      }),
    );
    const id = String(created['_id']);
    const putFile = (format: string, data: Buffer) =>
      rawRequest(t.url, {
        method: 'PUT',
        path: `/images/${id}`,
        headers: { 'content-type': 'application/octet-stream', 'x-image-meta-format': format },
        body: data,
        as: t.users.bob,
      });
    // A raw file declared raw replaces the qcow2: the old content is not what is checked.
    const replaced = await putFile('raw', raw.data);
    expect(replaced.status, replaced.body.toString()).toBe(200);
    expect(imageOf(replaced)).toMatchObject({ format: 'raw', size: raw.data.length, status: 'available' });
    // A qcow2 file declared vmdk: refused, and neither the format nor the file changes.
    const refused = await putFile('vmdk', qcow2.data);
    expect(refused.status).toBe(422);
    expect(await t.client('bob').meta(id)).toMatchObject({ format: 'raw', size: raw.data.length, status: 'available' });
    expect((await putFile('floppy', raw.data)).status).toBe(400);
  });
});
