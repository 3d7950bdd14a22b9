import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import {
  CONTENT_HASH_HEADER,
  DECODED_LENGTH_HEADER,
  signRequest,
  STREAMING_PAYLOAD,
  TRAILER_SIGNATURE_HEADER,
  trailerSignature,
  UNSIGNED_PAYLOAD,
} from '../../core/auth/signing.js';
import { rawExchange } from '../support/hostile-http.js';
import { rawRequest, type Credentials } from '../support/raw-http.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * Bodies swapped in transit. Every body is signed: metadata with its sha256 up front, uploads
 * with a sha256 computed while streaming and signed in the trailers. A man in the middle who
 * changes the bytes, the digest, or drops the trailers gets the upload refused, and nothing is
 * kept; UNSIGNED-PAYLOAD is refused outright.
 */
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Streamed {
  body: Buffer;
  /** What actually goes on the wire (defaults to `body`). */
  sent?: Buffer;
  /** Trailers as sent (defaults to the honest ones). */
  trailers?: (honest: Record<string, string>) => Record<string, string>;
  meta?: Record<string, string>;
}

/** A streamed upload as visor's client sends it, signed honestly, then altered as the test says. */
function streamedUpload(url: string, creds: Credentials, s: Streamed, path = '/images', method = 'POST') {
  const headers = signRequest(creds.accessKey, creds.secretKey, {
    method,
    path,
    query: [],
    headers: {
      'content-type': 'application/octet-stream',
      'transfer-encoding': 'chunked',
      [CONTENT_HASH_HEADER]: STREAMING_PAYLOAD,
      [DECODED_LENGTH_HEADER]: String(s.body.length),
      ...s.meta,
    },
  });
  const requestSignature = /Signature=([0-9a-f]{64})/.exec(headers['authorization']!)![1]!;
  const digest = sha256(s.body);
  const honest = {
    [CONTENT_HASH_HEADER]: digest,
    [TRAILER_SIGNATURE_HEADER]: trailerSignature(creds.secretKey, requestSignature, digest),
  };
  const trailers = s.trailers ? s.trailers(honest) : honest;
  const sent = s.sent ?? s.body;
  const head = [
    `${method} ${path} HTTP/1.1`,
    `host: ${new URL(url).host}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  const tail = ['0', ...Object.entries(trailers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
  return rawExchange(
    url,
    Buffer.concat([
      Buffer.from(head),
      Buffer.from(`${sent.length.toString(16)}\r\n`),
      sent,
      Buffer.from('\r\n'),
      Buffer.from(tail),
    ]),
    { waitMs: 10_000 },
  );
}

describe('signed bodies: nothing swapped in transit is taken', () => {
  let t: SecureServer;
  const meta = (name: string) => ({ 'x-image-meta-name': name, 'x-image-meta-architecture': 'x86_64' });
  const files = async () =>
    (await readdir(join(t.dataDir, 'images')).catch(() => [] as string[])).filter((f) => !f.startsWith('.')).sort();
  const named = async (name: string) => {
    const r = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: [['name', name]],
      as: t.users.admin,
    });
    return (r.json() as { images: { _id: string; status: string; checksums?: { sha256: string } }[] }).images;
  };

  beforeAll(async () => {
    t = await startSecureServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('an honest streamed upload is taken: available, with the sha256 that was signed (control)', async () => {
    const body = randomBytes(200_000);
    const r = await streamedUpload(t.url, t.users.bob, { body, meta: meta('honest-stream') });
    expect(r.status).toBe(201);
    expect(await named('honest-stream')).toEqual([
      expect.objectContaining({ status: 'available', checksums: expect.objectContaining({ sha256: sha256(body) }) }),
    ]);
  });

  it.each([
    [
      'bytes changed, trailers left as signed',
      (body: Buffer) => ({ sent: Buffer.concat([Buffer.from('EVIL'), body.subarray(4)]) }),
      400,
      /sha256 is .* the signed trailer says/,
    ],
    [
      'bytes changed and the digest trailer recomputed',
      (body: Buffer) => {
        const sent = Buffer.concat([Buffer.from('EVIL'), body.subarray(4)]);
        return { sent, trailers: (h: Record<string, string>) => ({ ...h, [CONTENT_HASH_HEADER]: sha256(sent) }) };
      },
      403,
      /trailer does not match/,
    ],
    [
      'a trailer signature made with another key',
      (body: Buffer) => ({
        trailers: (h: Record<string, string>) => ({
          ...h,
          [TRAILER_SIGNATURE_HEADER]: trailerSignature('guessed', 'x'.repeat(64), sha256(body)),
        }),
      }),
      403,
      /trailer does not match/,
    ],
    ['the trailers dropped', () => ({ trailers: () => ({}) }), 401, /must end with the trailers/],
    [
      'the signature trailer dropped',
      () => ({ trailers: (h: Record<string, string>) => ({ [CONTENT_HASH_HEADER]: h[CONTENT_HASH_HEADER]! }) }),
      401,
      /must end with the trailers/,
    ],
  ] as [string, (body: Buffer) => Partial<Streamed>, number, RegExp][])(
    'a streamed upload with %s: refused, nothing kept',
    async (_name, alter, status, message) => {
      const before = await files();
      const body = randomBytes(100_000);
      const name = `mitm-${randomBytes(4).toString('hex')}`;
      const r = await streamedUpload(t.url, t.users.bob, { body, meta: meta(name), ...alter(body) });
      expect(r.status).toBe(status);
      expect(r.text).toMatch(message);
      expect(await named(name)).toEqual([]);
      expect(await files()).toEqual(before);
    },
  );

  it('a re-upload (PUT) whose bytes were swapped leaves the image as it was', async () => {
    const first = randomBytes(10_000);
    const r = await streamedUpload(t.url, t.users.bob, { body: first, meta: meta('reupload') });
    expect(r.status).toBe(201);
    const [image] = await named('reupload');
    const body = randomBytes(10_000);
    const swapped = await streamedUpload(
      t.url,
      t.users.bob,
      { body, sent: randomBytes(10_000) },
      `/images/${image!._id}`,
      'PUT',
    );
    expect(swapped.status).toBe(400);
    expect(await named('reupload')).toEqual([
      expect.objectContaining({ status: 'available', checksums: expect.objectContaining({ sha256: sha256(first) }) }),
    ]);
  });

  it('UNSIGNED-PAYLOAD is refused for uploads and for metadata, before anything is stored', async () => {
    const before = await files();
    const upload = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/octet-stream', ...meta('unsigned-upload') },
      body: randomBytes(5000),
      as: t.users.bob,
      unsignedPayload: true,
    });
    expect(upload.status).toBe(401);
    expect(upload.json()).toMatchObject({ message: expect.stringMatching(/UNSIGNED-PAYLOAD is not accepted/) });
    const json = Buffer.from(JSON.stringify({ image: { name: 'unsigned-json', architecture: 'x86_64' } }));
    const metadata = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body: json,
      as: t.users.bob,
      unsignedPayload: true,
    });
    expect(metadata.status).toBe(401);
    expect(await named('unsigned-upload')).toEqual([]);
    expect(await named('unsigned-json')).toEqual([]);
    expect(await files()).toEqual(before);
  });

  it('a metadata body cannot use the streamed mode, and a swapped metadata body is refused', async () => {
    const body = Buffer.from(JSON.stringify({ image: { name: 'streamed-json', architecture: 'x86_64' } }));
    const r = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json', [CONTENT_HASH_HEADER]: STREAMING_PAYLOAD },
      body,
      as: t.users.bob,
    });
    expect(r.status).toBe(400);
    const signed = Buffer.from(JSON.stringify({ image: { name: 'meant', architecture: 'x86_64' } }));
    const swapped = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json', [CONTENT_HASH_HEADER]: sha256(signed) },
      body: Buffer.from(JSON.stringify({ image: { name: 'evil', architecture: 'x86_64' } })),
      as: t.users.bob,
    });
    expect(swapped.status).toBe(403);
    expect(await named('evil')).toEqual([]);
    expect(await named('streamed-json')).toEqual([]);
  });

  describe('through a man in the middle that rewrites the upload on its way', () => {
    let proxy: Server;
    let proxyUrl: string;
    const MARK = Buffer.from('GENUINE-BYTES-HERE');
    const EVIL = Buffer.from('TAMPERED-BYTES-NOW');

    beforeAll(async () => {
      const target = new URL(t.url);
      // Holds each request until it is whole, rewrites the marked bytes (same length), forwards it.
      proxy = createServer((client) => {
        let pending = Buffer.alloc(0);
        const upstream = connect(Number(target.port), target.hostname);
        upstream.pipe(client);
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.on('data', (chunk: Buffer) => {
          pending = Buffer.concat([pending, chunk]);
          const text = pending.toString('latin1');
          const chunked = /transfer-encoding: chunked/i.test(text);
          const complete = chunked ? /\r\n0\r\n(?:[^\r\n]+\r\n)*\r\n$/.test(text) : text.includes('\r\n\r\n');
          if (!complete) return;
          const at = pending.indexOf(MARK);
          if (at >= 0) EVIL.copy(pending, at);
          upstream.write(pending);
          pending = Buffer.alloc(0);
        });
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await new Promise((r) => proxy.close(r));
    });

    it("visor's own client: the swapped upload is refused and nothing is kept; an untouched one passes", async () => {
      const client = new VisorClient({
        url: proxyUrl,
        accessKey: t.users.bob.accessKey,
        secretKey: t.users.bob.secretKey,
        source: 'test',
      });
      const before = await files();
      const data = Buffer.concat([randomBytes(30_000), MARK, randomBytes(30_000)]);
      await expect(
        client.add(
          { name: 'through-mitm', architecture: 'x86_64' },
          { stream: Readable.from([data]), size: data.length },
        ),
      ).rejects.toMatchObject({ message: expect.stringMatching(/the signed trailer says/) });
      expect(await named('through-mitm')).toEqual([]);
      expect(await files()).toEqual(before);
      const clean = randomBytes(60_000);
      const image = await client.add(
        { name: 'past-mitm', architecture: 'x86_64' },
        { stream: Readable.from([clean]), size: clean.length },
      );
      expect(image).toMatchObject({
        status: 'available',
        checksums: expect.objectContaining({ sha256: sha256(clean) }),
      });
    });
  });

  it('the access key alone is no help: UNSIGNED is refused even with a valid signature over the request', async () => {
    const r = await rawRequest(t.url, {
      method: 'PUT',
      path: '/images/00000000-0000-4000-8000-000000000000',
      headers: { 'content-type': 'application/octet-stream', [CONTENT_HASH_HEADER]: UNSIGNED_PAYLOAD },
      body: randomBytes(10),
      as: t.users.admin,
    });
    expect(r.status).toBe(401);
  });
});
