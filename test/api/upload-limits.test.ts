import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_HASH_HEADER, signRequest } from '../../core/auth/signing.js';
import { startTestServer, type TestServer } from '../support/api-server.js';
import { chunkedUpload, rawRequest, type Credentials, type RawResponse } from '../support/raw-http.js';

/**
 * server.maxImageSize (Glance's image_size_cap) and server.quota, through the real API server:
 * an upload over either gets 413 naming the limit — at once when its length is announced, at
 * the limit when it is chunked — and keeps nothing: no record, no bytes.
 */
const MiB = 1024 * 1024;
const raw = (size: number) => randomBytes(size);

/** Sends only the headers of an upload announcing `length` bytes; resolves with the answer's status and body. */
function headersOnly(
  url: string,
  as: Credentials,
  length: number,
  name: string,
): Promise<{ status: number; body: string; ms: number }> {
  const headers = signRequest(as.accessKey, as.secretKey, {
    method: 'POST',
    path: '/images',
    query: [],
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      // The body is never sent (the answer must come first): the digest it would have.
      [CONTENT_HASH_HEADER]: createHash('sha256').update(Buffer.alloc(length)).digest('hex'),
      'x-image-meta-name': name,
      'x-image-meta-architecture': 'x86_64',
    },
  });
  const { hostname, port } = new URL(url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        [
          `POST /images HTTP/1.1`,
          `host: ${hostname}`,
          ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
          '',
          '',
        ].join('\r\n'),
      );
    });
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1);
      if (end >= 0 && length >= 0 && text.length >= end + 4 + length) {
        socket.destroy();
        resolve({
          status: Number(text.slice(9, 12)),
          body: text.slice(end + 4, end + 4 + length),
          ms: Date.now() - started,
        });
      }
    });
    socket.on('error', reject);
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer before the body was sent: ${JSON.stringify(text)}`));
    }, 10_000);
  });
}

describe('upload limits: size cap and per-user quota', () => {
  let t: TestServer;

  beforeAll(async () => {
    t = await startTestServer({
      extraYaml: '  maxImageSize: 1MiB\n  quota: { perUser: 3MiB, users: { carol: 10MiB } }\n',
    });
  });
  afterAll(() => t.close());

  const storeFiles = async () => (await readdir(join(t.dataDir, 'images')).catch(() => [] as string[])).sort();
  const named = (name: string) => t.client('admin').list('brief', { name });
  const upload = (as: 'bob' | 'carol', name: string, body: Buffer) =>
    rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: {
        'content-type': 'application/octet-stream',
        'x-image-meta-name': name,
        'x-image-meta-architecture': 'x86_64',
      },
      body,
      as: t.users[as],
    });
  const chunked = (as: 'bob' | 'carol', name: string, body: Buffer) =>
    chunkedUpload(t.url, {
      method: 'POST',
      path: '/images',
      as: t.users[as],
      body,
      headers: { 'x-image-meta-name': name, 'x-image-meta-architecture': 'x86_64' },
    });
  const message = (r: RawResponse) => (r.json() as { message: string }).message;

  it('refuses an announced length over maxImageSize at once, before any byte of the body', async () => {
    const before = await storeFiles();
    const answer = await headersOnly(t.url, t.users.bob, 2 * MiB, 'too-big-announced');
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toMatchObject({
      code: 413,
      message: expect.stringMatching(
        /\(2 MiB\) is larger than the 1 MiB size limit of this server \(server\.maxImageSize\)/,
      ),
    });
    expect(await named('too-big-announced')).toEqual([]);
    expect(await storeFiles()).toEqual(before);
  });

  it('stops a chunked upload at maxImageSize and keeps nothing', async () => {
    const before = await storeFiles();
    const response = await chunked('bob', 'too-big-chunked', raw(3 * MiB));
    expect(response.status).toBe(413);
    expect(message(response)).toMatch(/larger than the 1 MiB size limit/);
    expect(await named('too-big-chunked')).toEqual([]);
    expect(await storeFiles()).toEqual(before);
  });

  it('takes an image of exactly maxImageSize', async () => {
    expect((await upload('carol', 'exactly-1mib', raw(MiB))).status).toBe(201);
    expect((await chunked('carol', 'exactly-1mib-chunked', raw(MiB))).status).toBe(201);
  });

  it('the CLI client reports the 413 and its reason, even while it is still sending', async () => {
    const data = raw(40 * MiB);
    await expect(
      t
        .client('bob')
        .add({ name: 'client-too-big', architecture: 'x86_64' }, { stream: Readable.from([data]), size: data.length }),
    ).rejects.toMatchObject({
      kind: 'tooLarge',
      message: expect.stringMatching(/size limit of this server/),
    });
  });

  it('refuses going over the quota; purging a deleted image makes room; a replacement counts once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await upload('bob', `bob-${i}`, raw(MiB));
      expect(response.status).toBe(201);
      ids.push(String((response.json() as { image: { _id: string } }).image._id));
    }
    const before = await storeFiles();
    const announced = await upload('bob', 'bob-over', raw(1000));
    expect(announced.status).toBe(413);
    expect(message(announced)).toMatch(
      /would take bob over the storage quota of 3 MiB \(3 MiB in use; server\.quota\)/,
    );
    const streamed = await chunked('bob', 'bob-over-chunked', raw(1000));
    expect(streamed.status).toBe(413);
    expect(await named('bob-over')).toEqual([]);
    expect(await named('bob-over-chunked')).toEqual([]);
    expect(await storeFiles()).toEqual(before);

    // A new version of one of bob's images replaces its bytes: within the quota.
    const replaced = await rawRequest(t.url, {
      method: 'PUT',
      path: `/images/${ids[0]}`,
      headers: { 'content-type': 'application/octet-stream' },
      body: raw(MiB),
      as: t.users.bob,
    });
    expect(replaced.status).toBe(200);

    // A deleted image keeps its bits, restorable, for lifecycle.softDelete (7 days by default):
    // they still count, and the refusal says how to free them; purging does.
    await t.client('bob').delete(ids[1]!);
    const kept = await upload('bob', 'bob-after-delete', raw(MiB));
    expect(kept.status).toBe(413);
    expect(message(kept)).toMatch(/1 MiB of it by deleted images kept for restoring \(visor delete --purge frees it\)/);
    await t.client('bob').lifecycle(ids[1]!, 'purge');
    expect((await upload('bob', 'bob-after-delete', raw(MiB))).status).toBe(201);
  });

  it("applies a user's own quota over perUser", async () => {
    for (let i = 0; i < 5; i++) expect((await upload('carol', `carol-${i}`, raw(MiB))).status).toBe(201);
  });

  it('rejects sizes the config cannot mean', async () => {
    const { configFileSchema } = await import('../../core/config/schema.js');
    expect(configFileSchema.safeParse({ server: { maxImageSize: '10 parsecs' } }).success).toBe(false);
    expect(
      configFileSchema.parse({ server: { maxImageSize: '1.5GiB', quota: { perUser: '500MB' } } }).server,
    ).toMatchObject({ maxImageSize: 1.5 * 2 ** 30, quota: { perUser: 500e6 } });
    expect(configFileSchema.parse({}).server.maxImageSize).toBe(2 ** 40);
  });
});
