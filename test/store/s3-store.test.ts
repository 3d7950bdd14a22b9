import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import {
  DeleteObjectsCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError, type ErrorKind } from '../../core/errors.js';
import { silentLogger } from '../../core/logging/logger.js';
import { SecretRegistry } from '../../core/logging/redact.js';
import { s3StorePlugin } from '../../core/store/plugins.js';
import { s3Error } from '../../core/wire/s3/client.js';
import { S3Store, type S3StoreOptions } from '../../core/store/s3/s3-store.js';
import type { Store } from '../../core/store/port.js';
import { storeContract } from '../../core/testing/store-contract.js';
import { requirePeer } from '../peers/index.js';
import { createTestBucket, deleteTestBucket, listKeys, peerClient, pendingUploads, type S3Peer } from '../peers/s3.js';

const MiB = 1024 * 1024;
const partSize = 5 * MiB;
const { peer, skip: skipReason } = await requirePeer('s3');

const storeOn = (p: S3Peer, bucket: string, extra: Partial<S3StoreOptions> = {}) =>
  new S3Store({ ...p, forcePathStyle: true, bucket, prefix: 'images/', partSize, logger: silentLogger, ...extra });

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function kindOf(promise: Promise<unknown>): Promise<ErrorKind | string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (error === undefined) return 'no error';
  return isVisorError(error) ? error.kind : `not a VisorError: ${String(error)}`;
}

/** `size` bytes in 1 MiB chunks; fails with "client went away" after `failAfter` bytes. */
function source(size: number, failAfter = Infinity): { stream: Readable; data: () => Buffer } {
  const chunks: Buffer[] = [];
  let produced = 0;
  const stream = new Readable({
    read() {
      if (produced >= failAfter) {
        this.destroy(new Error('client went away'));
        return;
      }
      if (produced >= size) {
        this.push(null);
        return;
      }
      const chunk = randomBytes(Math.min(MiB, size - produced));
      chunks.push(chunk);
      produced += chunk.length;
      this.push(chunk);
    },
  });
  return { stream, data: () => Buffer.concat(chunks) };
}

// The contract suite, against the real Swift s3api peer. The objects live under a prefix, with
// one object planted outside it that the foreign URIs try to reach.
let contractBucket: string | undefined;
storeContract(
  's3',
  async () => {
    const p = peer!;
    const bucket = await createTestBucket(p, 'contract');
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
        `s3://${bucket}/images/a/../../outside/secret.abc123`,
        `s3://${bucket}/images/`,
        `s3://${bucket}/`,
        `s3://${bucket}`,
        `S3://${bucket}/images/secret.abc123`,
        `s3://${bucket}/images/secret.abc123?x-id=GetObject`,
      ],
      // The bucket is inspected and removed by the tests below, after the suite.
      cleanup: async () => client.destroy(),
    };
  },
  skipReason,
);

describe('s3 store contract: aftermath', () => {
  afterAll(async () => {
    if (peer && contractBucket) await deleteTestBucket(peer, contractBucket);
  });

  it('left no multipart upload pending after the contract suite (failures and aborts included)', async (ctx) => {
    if (!peer || !contractBucket) return ctx.skip(skipReason ?? 'the contract suite did not run');
    const client = peerClient(peer);
    try {
      expect(await pendingUploads(client, contractBucket)).toEqual([]);
      // Nothing but the planted object and what the successful puts wrote, all under the prefix.
      const keys = await listKeys(client, contractBucket);
      expect(keys).toContain('outside/secret.abc123');
      expect(keys.filter((k) => !k.startsWith('images/'))).toEqual(['outside/secret.abc123']);
    } finally {
      client.destroy();
    }
  });
});

describe('s3 store against Swift s3api', () => {
  let bucket: string;
  let client: S3Client;
  let store: Store;

  beforeAll(async () => {
    if (!peer) return;
    bucket = await createTestBucket(peer, 's3-store');
    client = peerClient(peer);
    store = storeOn(peer, bucket);
  });
  afterAll(async () => {
    if (!peer) return;
    await store.close();
    await deleteTestBucket(peer, bucket);
    client.destroy();
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

  const etagOf = async (uri: string) =>
    (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: uri.slice(`s3://${bucket}/`.length) }))).ETag ?? '';
  const nothingLeft = async (before: string[]) => {
    expect(await listKeys(client, bucket)).toEqual(before);
    expect(await pendingUploads(client, bucket)).toEqual([]);
  };

  test('one PutObject up to partSize, multipart above it; both read back intact', async () => {
    const exact = source(partSize);
    const single = await store.put('exact', exact.stream);
    expect(await etagOf(single.uri)).toBe(`"${single.checksums.md5}"`);
    expect((await store.head(single.uri)).checksums).toEqual({ md5: single.checksums.md5 });

    const over = source(2 * partSize + 1);
    const multi = await store.put('over', over.stream, { size: 2 * partSize + 1 });
    const data = over.data();
    expect(multi.size).toBe(data.length);
    expect(multi.checksums.sha256).toBe(sha256(data));
    // 3 parts, and the ETag S3 computes from them: md5 of the parts' MD5s, "-3".
    const partMd5s = [0, 1, 2].map((i) =>
      createHash('md5')
        .update(data.subarray(i * partSize, (i + 1) * partSize))
        .digest(),
    );
    expect(await etagOf(multi.uri)).toBe(`"${createHash('md5').update(Buffer.concat(partMd5s)).digest('hex')}-3"`);
    // A multipart ETag is not an MD5: head must not pass it off as one.
    expect(await store.head(multi.uri)).toMatchObject({ size: data.length, checksums: {} });
    expect(sha256(await buffer((await store.get(multi.uri)).stream))).toBe(multi.checksums.sha256);
    // A range across the boundary between parts 1 and 2.
    const across = await store.get(multi.uri, { range: { start: partSize - 10, end: partSize + 9 } });
    expect(across.range).toEqual({ start: partSize - 10, end: partSize + 9 });
    expect((await buffer(across.stream)).equals(data.subarray(partSize - 10, partSize + 10))).toBe(true);
  });

  test('a multipart upload whose checksum does not match is aborted, leaving nothing', async () => {
    const before = await listKeys(client, bucket);
    expect(await kindOf(store.put('liar', source(11 * MiB).stream, { expected: { sha256: 'f'.repeat(64) } }))).toBe(
      'integrity',
    );
    // A body shorter than declared, and one longer (which fails as soon as it overflows).
    expect(await kindOf(store.put('short', source(11 * MiB).stream, { size: 12 * MiB }))).toBe('integrity');
    expect(await kindOf(store.put('long', source(30 * MiB).stream, { size: 6 * MiB }))).toBe('integrity');
    await nothingLeft(before);
  });

  test('a source that fails after several parts leaves nothing', async () => {
    const before = await listKeys(client, bucket);
    expect(await kindOf(store.put('cut', source(40 * MiB, 12 * MiB).stream))).toBe('unavailable');
    await nothingLeft(before);
  });

  test('an aborted multipart upload leaves no pending upload and no object', async () => {
    const before = await listKeys(client, bucket);
    const body = new PassThrough();
    const controller = new AbortController();
    const put = store.put('aborted', body, { signal: controller.signal });
    const outcome = put.then(
      () => 'resolved',
      (e: unknown) => (isVisorError(e) ? e.kind : String(e)),
    );
    body.write(randomBytes(12 * MiB));
    // Wait until the upload is really multipart on the server, then pull the plug.
    const deadline = Date.now() + 30_000;
    while ((await pendingUploads(client, bucket)).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect((await pendingUploads(client, bucket)).length).toBe(1);
    expect(await listKeys(client, bucket)).toEqual(before);
    controller.abort();
    expect(await outcome).toBe('unavailable');
    await nothingLeft(before);
  });

  test('wrong credentials are an auth error', async (p) => {
    const wrongSecret = storeOn(p, bucket, { secretAccessKey: 'not-the-secret' });
    const unknownKey = storeOn(p, bucket, { accessKeyId: 'nobody:nobody' });
    try {
      const uri = (await store.put('probe', Readable.from([Buffer.from('x')]))).uri;
      expect(await kindOf(wrongSecret.put('x', Readable.from([Buffer.from('x')])))).toBe('auth');
      expect(await kindOf(wrongSecret.get(uri))).toBe('auth');
      expect(await kindOf(unknownKey.get(uri))).toBe('auth');
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

  test('a missing bucket is a clear configuration error, for writes and reads', async (p) => {
    const missing = `visor-missing-${randomBytes(4).toString('hex')}`;
    const orphan = storeOn(p, missing);
    try {
      const error = await orphan.put('x', Readable.from([Buffer.from('x')])).catch((e: unknown) => e);
      expect(isVisorError(error) && error.kind).toBe('config');
      expect((error as Error).message).toMatch(new RegExp(`bucket "${missing}" does not exist.*createBucket`));
      expect(await kindOf(orphan.get(`s3://${missing}/images/x.abc123`))).toBe('config');
    } finally {
      await orphan.close();
    }
  });

  test('createBucket: true creates a missing bucket on first put, and accepts an existing one', async (p) => {
    const fresh = `visor-created-${randomBytes(4).toString('hex')}`;
    const first = storeOn(p, fresh, { createBucket: true });
    const second = storeOn(p, fresh, { createBucket: true });
    try {
      const a = await first.put('a', Readable.from([Buffer.from('in a new bucket')]));
      await client.send(new HeadBucketCommand({ Bucket: fresh }));
      const b = await second.put('b', Readable.from([Buffer.from('again')]));
      expect((await buffer((await second.get(a.uri)).stream)).toString()).toBe('in a new bucket');
      expect((await buffer((await first.get(b.uri)).stream)).toString()).toBe('again');
    } finally {
      await first.close();
      await second.close();
      await deleteTestBucket(p, fresh);
    }
  });

  test('DeleteObjects works against a server that demands Content-MD5 (the client adds it)', async (p) => {
    const keys = ['batch/one', 'batch/two', 'batch/three'];
    for (const Key of keys) await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Key }));
    // The control: the same request from a client without the Content-MD5 middleware is refused.
    const bare = new S3Client({
      endpoint: p.endpoint,
      region: p.region,
      forcePathStyle: true,
      credentials: p,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      const refused = await bare
        .send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: keys[0]! }] } }))
        .then(
          () => undefined,
          (e: unknown) => s3Error(e, 'bare'),
        );
      expect(refused?.message).toMatch(/Content-MD5/);
    } finally {
      bare.destroy();
    }
    const out = await client.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.map((Key) => ({ Key })) } }),
    );
    expect(out.Errors ?? []).toEqual([]);
    expect((await listKeys(client, bucket)).filter((k) => k.startsWith('batch/'))).toEqual([]);
  });

  test('a closed store refuses work', async (p) => {
    const closed = storeOn(p, bucket);
    await closed.close();
    expect(await kindOf(closed.head(`s3://${bucket}/images/x.abc123`))).toBe('internal');
  });

  test('the s3 plugin validates its options, registers the secrets and builds a working store', async (p) => {
    const validate = async (options: unknown) => s3StorePlugin.optionsSchema['~standard'].validate(options);
    const base = { endpoint: p.endpoint, accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey, bucket };
    const ok = await validate(base);
    expect(ok.issues).toBeUndefined();
    expect((ok as { value: unknown }).value).toEqual({
      ...base,
      region: 'us-east-1',
      prefix: '',
      createBucket: false,
      partSize: 16 * MiB,
      concurrency: 4,
      signatureVersion: 4,
    });
    expect(s3StorePlugin).toMatchObject({ id: 's3', kind: 'store' });
    for (const bad of [
      { ...base, partSize: MiB },
      { ...base, bucket: 'a' },
      { ...base, prefix: '../up' },
      { ...base, endpoint: 'ftp://host' },
      { ...base, secretAccessKey: undefined },
      { ...base, unknownOption: 1 },
      { ...base, concurrency: 0 },
      { ...base, signatureVersion: 3 },
      { ...base, signatureVersion: 'V2' },
    ]) {
      expect((await validate(bad)).issues, JSON.stringify(bad)).toBeDefined();
    }
    const secrets = new SecretRegistry();
    const options = (await validate({ ...base, prefix: 'plugin/', sessionToken: undefined })) as { value: never };
    const created = await createViaPlugin(options.value, secrets);
    try {
      expect(secrets.maskText(`secret=${p.secretAccessKey}`)).toBe('secret=***');
      const put = await created.put('via-plugin', Readable.from([Buffer.from('plugin')]));
      expect(put.uri).toMatch(new RegExp(`^s3://${bucket}/plugin/via-plugin\\.[a-z0-9]+$`));
      expect((await buffer((await created.get(put.uri)).stream)).toString()).toBe('plugin');
    } finally {
      await created.close();
    }
  });
});

/** Builds a store through the plugin's container module, as the composition root does. */
async function createViaPlugin(options: never, secrets: SecretRegistry): Promise<Store> {
  const { PluginRegistry } = await import('../../core/registry/registry.js');
  const registry = new PluginRegistry();
  registry.register(s3StorePlugin);
  return registry
    .factory('store', 's3')
    .create(options, { name: 'images', dataDir: '/nonexistent', logger: silentLogger, secrets }) as Promise<Store>;
}

describe('s3Error', () => {
  const sdkError = (name: string, status?: number, extra: Record<string, unknown> = {}) =>
    Object.assign(
      new Error(`${name} happened`),
      { name, $fault: 'client', $metadata: status === undefined ? {} : { httpStatusCode: status, requestId: 'req-1' } },
      extra,
    );

  it.each([
    ['NoSuchKey', 404, 'notFound'],
    ['NotFound', 404, 'notFound'],
    ['NoSuchBucket', 404, 'notFound'],
    ['AccessDenied', 403, 'forbidden'],
    ['Forbidden', 403, 'forbidden'],
    ['SignatureDoesNotMatch', 403, 'auth'],
    ['InvalidAccessKeyId', 403, 'auth'],
    ['ExpiredToken', 400, 'auth'],
    ['Unknown', 401, 'auth'],
    ['BucketAlreadyOwnedByYou', 409, 'conflict'],
    ['BadDigest', 400, 'integrity'],
    ['InvalidRange', 416, 'invalidInput'],
    ['EntityTooSmall', 400, 'invalidInput'],
    ['NotImplemented', 501, 'unsupported'],
    ['SlowDown', 503, 'unavailable'],
    ['InternalError', 500, 'unavailable'],
    ['UnknownError', 502, 'unavailable'],
    ['RequestTimeout', 400, 'timeout'],
    ['PermanentRedirect', 301, 'config'],
  ] as const)('%s (HTTP %s) -> %s', (name, status, kind) => {
    const error = s3Error(sdkError(name, status), 's3: test');
    expect(error.kind).toBe(kind);
    expect(error.details).toMatchObject({ status, requestId: 'req-1' });
    expect(error.message).toMatch(/^s3: test: /);
  });

  it('maps transport failures and timeouts', () => {
    expect(
      s3Error(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'x').kind,
    ).toBe('unavailable');
    expect(s3Error(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'x').kind).toBe('unavailable');
    expect(s3Error(Object.assign(new Error('timed out'), { name: 'TimeoutError', code: 'ETIMEDOUT' }), 'x').kind).toBe(
      'timeout',
    );
    expect(
      s3Error(
        sdkError('Error', 200, {
          message: 'Deserialization error: to see the raw response, inspect the hidden field {error}.$response',
        }),
        'x',
      ).kind,
    ).toBe('invalidResponse');
    expect(s3Error(new TypeError('a bug'), 'x').kind).toBe('internal');
  });

  it('keeps messages to one line and VisorErrors as they are', () => {
    const html = s3Error(sdkError('Unknown', 401, { message: '<html>\n<h1>Unauthorized</h1>\n</html>' }), 'x');
    expect(html.message).not.toContain('\n');
    const original = s3Error(sdkError('NoSuchKey', 404), 'x');
    expect(s3Error(original, 'y')).toBe(original);
  });

  it('maps real errors from a server that is not there', async () => {
    const store = new S3Store({
      endpoint: 'http://127.0.0.1:9',
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: 'a:b',
      secretAccessKey: 'c',
      bucket: 'nowhere',
      maxAttempts: 1,
    });
    try {
      expect(await kindOf(store.head('s3://nowhere/x.abc123'))).toBe('unavailable');
    } finally {
      await store.close();
    }
  });
});
