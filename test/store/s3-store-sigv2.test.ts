import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isVisorError, type ErrorKind } from '../../core/errors.js';
import { silentLogger } from '../../core/logging/logger.js';
import { SecretRegistry } from '../../core/logging/redact.js';
import { PluginRegistry } from '../../core/registry/registry.js';
import { s3StorePlugin } from '../../core/store/plugins.js';
import { S3Store, type S3StoreOptions } from '../../core/store/s3/s3-store.js';
import { storeContract } from '../../core/testing/store-contract.js';
import { canonicalResource, s3SignatureV2, s3StringToSign } from '../../core/wire/s3/sigv2.js';
import { requirePeer } from '../peers/index.js';
import { createTestBucket, deleteTestBucket, listKeys, peerClient, pendingUploads, type S3Peer } from '../peers/s3.js';

// The s3 store with `signatureVersion: 2` (S3's V2 header scheme and V2 presigned URLs), against
// the real Swift s3api peer, which checks V2 signatures as Walrus and Cumulus do.

const MiB = 1024 * 1024;
const partSize = 5 * MiB;
const { peer, skip: skipReason } = await requirePeer('s3');

const storeOn = (p: S3Peer, bucket: string, extra: Partial<S3StoreOptions> = {}) =>
  new S3Store({
    ...p,
    forcePathStyle: true,
    bucket,
    prefix: 'images/',
    partSize,
    signatureVersion: 2,
    logger: silentLogger,
    ...extra,
  });

async function kindOf(promise: Promise<unknown>): Promise<ErrorKind | string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (error === undefined) return 'no error';
  return isVisorError(error) ? error.kind : `not a VisorError: ${String(error)}`;
}

let contractBucket: string | undefined;
storeContract(
  's3 (signatureVersion 2)',
  async () => {
    const p = peer!;
    const bucket = await createTestBucket(p, 'contract-v2');
    contractBucket = bucket;
    const client = peerClient(p);
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'outside/secret.abc123', Body: 'outside the store' }),
    );
    return {
      store: async () => storeOn(p, bucket),
      listObjects: () => listKeys(client, bucket),
      largeSize: 24 * MiB,
      foreignUris: [
        's3://another-bucket/images/secret.abc123',
        `s3://${bucket}/outside/secret.abc123`,
        `s3://${bucket}/images/../outside/secret.abc123`,
        `s3://${bucket}/images/%2e%2e/outside/secret.abc123`,
        `s3://${bucket}/images/`,
        `s3://${bucket}/images/secret.abc123?uploads`,
      ],
      cleanup: async () => client.destroy(),
    };
  },
  skipReason,
);

describe('s3 store contract (signatureVersion 2): aftermath', () => {
  afterAll(async () => {
    if (peer && contractBucket) await deleteTestBucket(peer, contractBucket);
  });

  it('left no multipart upload pending and nothing outside the prefix', async (ctx) => {
    if (!peer || !contractBucket) return ctx.skip(skipReason ?? 'the contract suite did not run');
    const client = peerClient(peer);
    try {
      expect(await pendingUploads(client, contractBucket)).toEqual([]);
      const keys = await listKeys(client, contractBucket);
      expect(keys.filter((k) => !k.startsWith('images/'))).toEqual(['outside/secret.abc123']);
    } finally {
      client.destroy();
    }
  });
});

interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** A reverse proxy in front of the peer that records every request as it arrives on the wire. */
async function recordingProxy(target: string): Promise<{ server: Server; endpoint: string; seen: Recorded[] }> {
  const upstream = new URL(target);
  const seen: Recorded[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, endpoint: `http://127.0.0.1:${port}`, seen };
}

/** The V2 signature over a request as it arrived (method, headers, path and query). */
function signatureOf(r: Recorded, secret: string): string {
  const url = new URL(r.url, 'http://recorded');
  const amz = Object.fromEntries(
    Object.entries(r.headers).flatMap(([k, v]) => (k.startsWith('x-amz-') ? [[k, String(v)]] : [])),
  );
  const text = s3StringToSign({
    method: r.method,
    contentMd5: r.headers['content-md5'] as string | undefined,
    contentType: r.headers['content-type'],
    date: String(r.headers['date']),
    headers: amz,
    resource: canonicalResource(url.pathname, Object.fromEntries(url.searchParams)),
  });
  return s3SignatureV2(secret, text);
}

const sigV4Headers = /^(x-amz-date|x-amz-content-sha256|x-amz-checksum-.*|x-amz-sdk-checksum-algorithm|x-amz-trailer)$/;

describe('s3 store with signatureVersion 2 against Swift s3api', () => {
  let bucket: string;
  let store: S3Store;

  beforeAll(async () => {
    if (!peer) return;
    bucket = await createTestBucket(peer, 's3-store-v2');
    store = storeOn(peer, bucket);
  });
  afterAll(async () => {
    if (!peer) return;
    await store.close();
    await deleteTestBucket(peer, bucket);
  });

  const test = (title: string, fn: (p: S3Peer) => Promise<void>, timeout = 120_000) =>
    it(
      title,
      async (ctx) => {
        if (!peer) return ctx.skip(skipReason ?? 'no S3 peer');
        await fn(peer);
      },
      timeout,
    );

  test('every request, multipart included, is signed with V2 and carries no SigV4 header', async (p) => {
    const proxy = await recordingProxy(p.endpoint);
    const v2 = storeOn(p, bucket, { endpoint: proxy.endpoint });
    const v4 = storeOn(p, bucket, { endpoint: proxy.endpoint, signatureVersion: 4 });
    try {
      const data = randomBytes(11 * MiB);
      const put = await v2.put('recorded', Readable.from([data]), { size: data.length });
      const part = await buffer((await v2.get(put.uri, { range: { start: 1, end: 9 } })).stream);
      expect(part.equals(data.subarray(1, 10))).toBe(true);
      expect((await v2.head(put.uri)).size).toBe(data.length);
      await v2.delete(put.uri);
      const v2Requests = proxy.seen.splice(0);

      // Multipart: create, three parts, complete; then GET, HEAD, DELETE.
      const calls = v2Requests.map((r) => `${r.method} ${r.url.replace(/uploadId=[^&]+/, 'uploadId=ID')}`);
      expect(calls.filter((c) => /^POST .*[?&]uploads(=|&|$)/.test(c))).toHaveLength(1);
      expect(calls.filter((c) => /^PUT .*partNumber=\d+/.test(c))).toHaveLength(3);
      expect(calls.filter((c) => /^POST .*uploadId=ID/.test(c))).toHaveLength(1);
      for (const method of ['GET', 'HEAD', 'DELETE']) expect(calls.some((c) => c.startsWith(`${method} `))).toBe(true);
      for (const r of v2Requests) {
        const call = `${r.method} ${r.url}`;
        const authorization = String(r.headers['authorization']);
        expect(authorization, call).toMatch(new RegExp(`^AWS ${p.accessKeyId}:[A-Za-z0-9+/]{27}=$`));
        expect(r.headers['date'], call).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
        expect(
          Object.keys(r.headers).filter((h) => sigV4Headers.test(h)),
          call,
        ).toEqual([]);
        expect(authorization, call).toBe(`AWS ${p.accessKeyId}:${signatureOf(r, p.secretAccessKey)}`);
      }

      // The same store without the option signs with SigV4: the option is what changes the wire.
      await v4.head((await v4.put('recorded-v4', Readable.from([Buffer.from('v4')]))).uri);
      const v4Requests = proxy.seen.splice(0);
      expect(v4Requests.length).toBeGreaterThan(0);
      for (const r of v4Requests) expect(String(r.headers['authorization'])).toMatch(/^AWS4-HMAC-SHA256 /);
    } finally {
      await v2.close();
      await v4.close();
      await new Promise((resolve) => proxy.server.close(resolve));
    }
  });

  test('a wrong secret or an unknown key is refused as auth, without the secret in the message', async (p) => {
    const wrongSecret = storeOn(p, bucket, { secretAccessKey: 'not-the-secret' });
    const unknownKey = storeOn(p, bucket, { accessKeyId: 'nobody:nobody' });
    try {
      const uri = (await store.put('probe', Readable.from([Buffer.from('x')]))).uri;
      expect(await kindOf(wrongSecret.put('x', Readable.from([Buffer.from('x')])))).toBe('auth');
      expect(await kindOf(wrongSecret.get(uri))).toBe('auth');
      expect(await kindOf(unknownKey.get(uri))).toBe('auth');
      // A HEAD answer has no body, so no error code: a 403 there cannot be told from AccessDenied.
      expect(await kindOf(wrongSecret.head(uri))).toBe('forbidden');
      const error = await wrongSecret.get(uri).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error?.message).not.toContain('not-the-secret');
    } finally {
      await wrongSecret.close();
      await unknownKey.close();
    }
  });

  test('a host clock an hour off: refused as skewed once, then signed with the server time', async (p) => {
    const proxy = await recordingProxy(p.endpoint);
    const skewed = storeOn(p, bucket, { endpoint: proxy.endpoint });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 3600_000 });
    try {
      const put = await skewed.put('skewed', Readable.from([Buffer.from('late clock')]));
      expect((await buffer((await skewed.get(put.uri)).stream)).toString()).toBe('late clock');
      const dates = proxy.seen.map((r) => Date.parse(String(r.headers['date'])));
      const realNow = Date.now() - 3600_000;
      // The first request carried the host's wrong time; every later one the server's.
      expect(Math.abs(dates[0]! - Date.now())).toBeLessThan(5_000);
      expect(proxy.seen.length).toBeGreaterThanOrEqual(3);
      for (const date of dates.slice(1)) expect(Math.abs(date - realNow)).toBeLessThan(5_000);
    } finally {
      vi.useRealTimers();
      await skewed.close();
      await new Promise((resolve) => proxy.server.close(resolve));
    }
  });

  test('a presigned V2 URL downloads with plain fetch; tampered or expired ones are refused', async () => {
    const data = randomBytes(64 * 1024);
    const { uri } = await store.put('shared', Readable.from([data]));
    const url = await store.presignedUrl(uri, { expiresInSeconds: 300 });
    const query = new URL(url).searchParams;
    expect([...query.keys()].sort()).toEqual(['AWSAccessKeyId', 'Expires', 'Signature']);
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer()).equals(data)).toBe(true);

    const tamper = (name: string, value: string) => {
      const u = new URL(url);
      u.searchParams.set(name, value);
      return u.toString();
    };
    const signature = query.get('Signature')!;
    const flipped = `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
    for (const bad of [
      tamper('Signature', flipped),
      tamper('Expires', String(Number(query.get('Expires')) + 3600)),
      url.replace('/images/shared.', '/images/other.'),
    ]) {
      const refused = await fetch(bad);
      expect(refused.status, bad).toBe(403);
      await refused.arrayBuffer();
    }
    // Signed for a time already past: refused although the signature is right.
    const expired = await store.presignedUrl(uri, { expiresInSeconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const late = await fetch(expired);
    expect(late.status).toBe(403);
    await late.arrayBuffer();
  });

  test('presigned URLs: SigV4 without the option; lifetimes and foreign URIs checked', async (p) => {
    const v4 = storeOn(p, bucket, { signatureVersion: 4 });
    try {
      const { uri } = await v4.put('shared-v4', Readable.from([Buffer.from('four')]));
      const url = await v4.presignedUrl(uri, { expiresInSeconds: 60 });
      expect(new URL(url).searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
      const answer = await fetch(url);
      expect(await answer.text()).toBe('four');
      expect(await kindOf(store.presignedUrl(uri, { expiresInSeconds: 0 }))).toBe('invalidInput');
      expect(await kindOf(store.presignedUrl(uri, { expiresInSeconds: 8 * 24 * 3600 }))).toBe('invalidInput');
      expect(await kindOf(store.presignedUrl(`s3://${bucket}/outside/secret.abc123`))).toBe('invalidInput');
    } finally {
      await v4.close();
    }
  });

  test('the plugin takes signatureVersion 2 and builds a store that works', async (p) => {
    const validate = async (options: unknown) => s3StorePlugin.optionsSchema['~standard'].validate(options);
    const options = {
      endpoint: p.endpoint,
      accessKeyId: p.accessKeyId,
      secretAccessKey: p.secretAccessKey,
      bucket,
      prefix: 'plugin-v2/',
      signatureVersion: 2,
    };
    const parsed = await validate(options);
    expect(parsed.issues).toBeUndefined();
    expect((parsed as { value: { signatureVersion: number } }).value.signatureVersion).toBe(2);
    for (const bad of [3, 'V2', '', null, 2.5])
      expect(JSON.stringify((await validate({ ...options, signatureVersion: bad })).issues)).toContain(
        'must be 2 or 4',
      );
    for (const [given, taken] of [
      ['v2', 2],
      ['2', 2],
      ['v4', 4],
      [4, 4],
    ] as const) {
      const value = (await validate({ ...options, signatureVersion: given })) as {
        value: { signatureVersion: number };
      };
      expect(value.value.signatureVersion, String(given)).toBe(taken);
    }
    const registry = new PluginRegistry();
    registry.register(s3StorePlugin);
    const created = (await registry.factory('store', 's3').create((parsed as { value: never }).value, {
      name: 'images',
      dataDir: '/nonexistent',
      logger: silentLogger,
      secrets: new SecretRegistry(),
    })) as S3Store;
    try {
      const put = await created.put('via-plugin', Readable.from([Buffer.from('plugin v2')]));
      expect((await buffer((await created.get(put.uri)).stream)).toString()).toBe('plugin v2');
      expect(new URL(await created.presignedUrl(put.uri)).searchParams.has('AWSAccessKeyId')).toBe(true);
    } finally {
      await created.close();
    }
  });
});
