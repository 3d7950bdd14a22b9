import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { CopyObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NimbusDriver } from '../../../adapters/nimbus/index.js';
import { isVisorError, type ErrorKind } from '../../../core/errors.js';
import type { ContentSource, Markers } from '../../../core/iaas/port.js';
import type { Image, ImageDraft } from '../../../core/image/model.js';
import { bufferContent, randomImageBytes } from '../../support/content.js';
import { makeImage } from '../../support/images.js';
import { requirePeer } from '../../peers/index.js';
import type { S3Peer } from '../../peers/s3.js';
import { directDriver, pluginDriver, setUpCumulusRepository, type CumulusRepository } from './harness.js';

/**
 * The Nimbus driver against a Cumulus-laid-out bucket on the real S3 peer: where images go,
 * how access changes move them, gzip mode, large (multipart) images, paging, and that every
 * failure leaves the repository as it was.
 */

const MiB = 1024 * 1024;
const { peer: started, skip: skipReason } = await requirePeer('s3');
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function kindOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (error === undefined) return 'no error';
  return isVisorError(error) ? `${error.kind}: ${error.message}` : `not a VisorError: ${String(error)}`;
}
const expectKind = async (promise: Promise<unknown>, kind: ErrorKind, pattern?: RegExp) => {
  const got = await kindOf(promise);
  expect(got).toMatch(new RegExp(`^${kind}:`));
  if (pattern) expect(got).toMatch(pattern);
};

/** A test that skips with the peer's reason when the peer cannot run here. */
const test = (title: string, fn: () => Promise<void>, timeout = 120_000) =>
  it(
    title,
    async (ctx) => {
      if (skipReason) ctx.skip(skipReason);
      await fn();
    },
    timeout,
  );

let counter = 0;
const imageNamed = (draft: Partial<ImageDraft> = {}): Image =>
  makeImage({
    name: `img-${++counter}-${randomBytes(3).toString('hex')}`,
    access: 'private',
    diskFormat: 'raw',
    containerFormat: 'bare',
    ...draft,
  });
const markersOf = (image: Image, content: ContentSource): Markers => ({
  agent: 'driver-test',
  imageId: image.id,
  sha256: content.checksums.sha256,
  revision: image.revision,
});

describe('nimbus driver on a Cumulus layout', () => {
  let repo: CumulusRepository;
  let driver: NimbusDriver;
  const create = async (
    draft: Partial<ImageDraft> = {},
    content: ContentSource = bufferContent(randomImageBytes(64 * 1024)),
    d: NimbusDriver = driver,
  ) => {
    const image = imageNamed(draft);
    const markers = markersOf(image, content);
    const cloud = await d.create({ image, markers, content, timeoutMs: 120_000 });
    return { image, markers, cloud, content };
  };
  const expectNothingLeft = async (before: string[]) => {
    expect(await repo.keys()).toEqual(before);
    expect(await repo.pendingUploads()).toEqual([]);
  };

  beforeAll(async () => {
    if (skipReason) return;
    repo = await setUpCumulusRepository(started as S3Peer, 'driver');
    driver = directDriver(repo);
  });
  afterAll(async () => {
    await driver?.close();
    await repo?.cleanup();
  });

  test(
    'puts private images in VMS/<canonical-id>/ and public ' + 'ones in VMS/common/, public-read like cloud-client',
    async () => {
      const mine = await create({ access: 'private' });
      const shared = await create({ access: 'public' });
      expect(mine.cloud.nativeId).toBe(`VMS/${repo.canonicalId}/${mine.image.name}`);
      expect(mine.cloud.access).toBe('private');
      expect(shared.cloud.nativeId).toBe(`VMS/common/${shared.image.name}`);
      expect(shared.cloud.access).toBe('public');
      const keys = await repo.keys();
      expect(keys).toContain(mine.cloud.nativeId);
      expect(keys).toContain(shared.cloud.nativeId);
      const head = await repo.client.send(new HeadObjectCommand({ Bucket: repo.bucket, Key: mine.cloud.nativeId }));
      expect(head.Metadata).toMatchObject({
        'visor-agent': 'driver-test',
        'visor-image-id': mine.image.id,
        'visor-sha256': mine.content.checksums.sha256,
        'visor-revision': '1',
      });
      expect(head.ETag?.replaceAll('"', '')).toBe(mine.content.checksums.md5);
    },
  );

  test("lists the user's and the common images, and nothing else of the repository", async () => {
    const unmarked = await repo.putUnmarked('common', `cloud-client-upload-${randomBytes(3).toString('hex')}`);
    const listed = await driver.list();
    const ids = listed.map((i) => i.nativeId);
    expect(ids).toContain(unmarked);
    const found = listed.find((i) => i.nativeId === unmarked);
    expect(found).toMatchObject({ access: 'public', state: 'active' });
    expect(found?.markers).toBeUndefined();
    for (const key of repo.seeded) expect(ids).not.toContain(key);
    expect(ids.every((id) => id.startsWith(`VMS/${repo.canonicalId}/`) || id.startsWith('VMS/common/'))).toBe(true);
  });

  test(
    'moves an image between the private and the common ' + 'folder when its access changes, without re-uploading',
    async () => {
      const { image, markers, cloud, content } = await create({ access: 'private' });
      const before = await repo.keys();
      const published = await driver.updateMetadata(
        cloud.nativeId,
        { ...image, access: 'public', revision: 2 },
        { ...markers, revision: 2 },
      );
      expect(published.nativeId).toBe(`VMS/common/${image.name}`);
      expect(published.access).toBe('public');
      expect(published.markers).toEqual({ ...markers, revision: 2 });
      expect(published.checksums).toEqual({ md5: content.checksums.md5, sha256: content.checksums.sha256 });
      const after = await repo.keys();
      expect(after).not.toContain(cloud.nativeId);
      expect(after.length).toBe(before.length);
      await expectKind(driver.get(cloud.nativeId), 'notFound');

      const back = await driver.updateMetadata(
        published.nativeId,
        { ...image, access: 'private', revision: 3 },
        { ...markers, revision: 3 },
      );
      expect(back.nativeId).toBe(cloud.nativeId);
      expect(back.access).toBe('private');
      const { stream } = await driver.download(back.nativeId);
      expect(sha256(await buffer(stream))).toBe(content.checksums.sha256);
    },
  );

  test('refuses a move onto a name the other folder already has, and changes nothing', async () => {
    const { image, markers, cloud } = await create({ access: 'private' });
    await repo.putUnmarked('common', image.name, "someone else's image");
    const before = await repo.keys();
    await expectKind(
      driver.updateMetadata(cloud.nativeId, { ...image, access: 'public' }, markers),
      'conflict',
      /already exists/,
    );
    expect(await repo.keys()).toEqual(before);
    expect((await driver.get(cloud.nativeId)).markers).toEqual(markers);
  });

  test('refuses access "shared", which Cumulus cannot express', async () => {
    const before = await repo.keys();
    await expectKind(create({ access: 'shared', members: ['someone'] }), 'unsupported', /no sharing/);
    await expectNothingLeft(before);
  });

  test('rewrites metadata in place with a server-side copy, keeping the bytes and the object name', async () => {
    const { image, markers, cloud, content } = await create({ properties: { purpose: 'first' } });
    const updated = await driver.updateMetadata(
      cloud.nativeId,
      { ...image, name: `${image.name}-renamed`, properties: { purpose: 'second' }, tags: ['a b', 'c'], revision: 2 },
      { ...markers, revision: 2 },
    );
    expect(updated.nativeId).toBe(cloud.nativeId);
    expect(updated.name).toBe(`${image.name}-renamed`);
    expect(updated.metadata.properties).toEqual({ purpose: 'second' });
    expect(updated.metadata.tags).toEqual(['a b', 'c']);
    const got = await repo.client.send(new GetObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId }));
    expect(sha256(Buffer.from(await got.Body!.transformToByteArray()))).toBe(content.checksums.sha256);
    expect(got.ContentType).toBe('application/octet-stream');
  });

  test('refuses to create over an existing object, and leaves that object alone', async () => {
    const existing = await repo.putUnmarked('own', `taken-${randomBytes(3).toString('hex')}`, 'the original');
    const name = existing.split('/').pop()!;
    const content = bufferContent(randomImageBytes(1024));
    const image = imageNamed({ name });
    await expectKind(
      driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 120_000 }),
      'conflict',
      /already has an image of that name/,
    );
    const got = await repo.client.send(new GetObjectCommand({ Bucket: repo.bucket, Key: existing }));
    expect(await got.Body!.transformToString()).toBe('the original');
  });

  test('retires by deleting the object; an id outside the layout is notFound and never deleted', async () => {
    const { cloud } = await create();
    await driver.retire(cloud.nativeId, 'delete');
    expect(await repo.keys()).not.toContain(cloud.nativeId);
    await expectKind(driver.retire(cloud.nativeId, 'delete'), 'notFound');
    for (const key of repo.seeded) await expectKind(driver.retire(key, 'delete'), 'notFound');
    expect(await repo.keys()).toEqual(expect.arrayContaining(repo.seeded));
  });

  test(
    'uploads a large image as a verified multipart upload, ' + 'and copies it for metadata updates and moves',
    async () => {
      const data = randomBytes(11 * MiB + 3);
      const content = bufferContent(data);
      let progress = 0;
      const image = imageNamed();
      const markers = markersOf(image, content);
      const cloud = await driver.create({
        image,
        markers,
        content,
        onProgress: (n) => (progress = n),
        timeoutMs: 120_000,
      });
      expect(progress).toBe(data.length);
      const head = await repo.client.send(new HeadObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId }));
      expect(head.ETag).toMatch(/-3"?$/);
      expect(cloud.checksums).toEqual({ md5: content.checksums.md5, sha256: content.checksums.sha256 });
      expect(cloud.size).toBe(data.length);

      // In place (CopyObject), then in place and a move in parts (UploadPartCopy, threshold lowered to 5 MiB).
      const inPlace = await driver.updateMetadata(
        cloud.nativeId,
        { ...image, minRam: 512, revision: 2 },
        { ...markers, revision: 2 },
      );
      expect(inPlace.metadata.minRam).toBe(512);
      const parted = directDriver(repo, { copyThreshold: 5 * MiB });
      try {
        const partedInPlace = await parted.updateMetadata(
          cloud.nativeId,
          { ...image, minRam: 768, revision: 3 },
          { ...markers, revision: 3 },
        );
        expect(partedInPlace).toMatchObject({ nativeId: cloud.nativeId, size: data.length, metadata: { minRam: 768 } });
        const moved = await parted.updateMetadata(
          cloud.nativeId,
          { ...image, access: 'public', revision: 4 },
          { ...markers, revision: 4 },
        );
        expect(moved.nativeId).toBe(`VMS/common/${image.name}`);
        expect(moved.markers?.revision).toBe(4);
        expect(moved.checksums.sha256).toBe(content.checksums.sha256);
        const { stream, size } = await parted.download(moved.nativeId);
        expect(size).toBe(data.length);
        expect(sha256(await buffer(stream))).toBe(content.checksums.sha256);
        const { stream: part } = await parted.download(moved.nativeId, { range: { start: 6 * MiB, end: 6 * MiB + 9 } });
        expect(await buffer(part)).toEqual(data.subarray(6 * MiB, 6 * MiB + 10));
        expect(await repo.pendingUploads()).toEqual([]);
      } finally {
        await parted.close();
      }
    },
  );

  test('leaves nothing when the content lies, fails mid-way, or runs past its deadline', async () => {
    const before = await repo.keys();
    // A lie in a multipart-sized image: the parts went up, the commit never happens.
    const liar = bufferContent(randomBytes(11 * MiB), 'raw', { lie: true });
    const liarImage = imageNamed();
    await expectKind(
      driver.create({ image: liarImage, markers: markersOf(liarImage, liar), content: liar, timeoutMs: 120_000 }),
      'integrity',
      /content does not match/,
    );
    await expectNothingLeft(before);

    // A source that breaks after 7 MiB.
    const good = bufferContent(randomBytes(12 * MiB));
    const broken: ContentSource = {
      ...good,
      open: async () =>
        Readable.from(
          (async function* () {
            yield randomBytes(7 * MiB);
            throw new Error('the store went away');
          })(),
        ),
    };
    const brokenImage = imageNamed();
    await expectKind(
      driver.create({
        image: brokenImage,
        markers: markersOf(brokenImage, broken),
        content: broken,
        timeoutMs: 120_000,
      }),
      'unavailable',
      /the store went away/,
    );
    await expectNothingLeft(before);

    // A source that never ends, and a deadline of half a second.
    const stalled: ContentSource = { ...good, open: async () => new Readable({ read() {} }) };
    const stalledImage = imageNamed();
    await expectKind(
      driver.create({
        image: stalledImage,
        markers: markersOf(stalledImage, stalled),
        content: stalled,
        timeoutMs: 500,
      }),
      'timeout',
      /not uploaded within 0.5 s/,
    );
    await expectNothingLeft(before);

    // Longer than declared.
    const longer: ContentSource = { ...bufferContent(randomBytes(2048)), size: 1024 };
    const longerImage = imageNamed();
    await expectKind(
      driver.create({
        image: longerImage,
        markers: markersOf(longerImage, longer),
        content: longer,
        timeoutMs: 120_000,
      }),
      'integrity',
    );
    await expectNothingLeft(before);
  });

  test('notices bytes replaced behind its back: the image is no longer claimed and a download fails', async () => {
    const { cloud } = await create();
    const other = await repo.putUnmarked('own', `other-${randomBytes(3).toString('hex')}`, randomBytes(64 * 1024));
    const head = await repo.client.send(new HeadObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId }));
    // Someone copies other bytes over the image, keeping visor's metadata.
    await repo.client.send(
      new CopyObjectCommand({
        Bucket: repo.bucket,
        Key: cloud.nativeId,
        CopySource: `${repo.bucket}/${other}`,
        MetadataDirective: 'REPLACE',
        Metadata: head.Metadata,
      }),
    );
    const got = await driver.get(cloud.nativeId);
    expect(got.markers).toBeUndefined();
    const { stream } = await driver.download(cloud.nativeId);
    await expect(buffer(stream)).rejects.toMatchObject({ kind: 'integrity' });
  });

  test('reports a missing bucket as a configuration problem', async () => {
    // Lower case: Swift refuses upper-case bucket names such as Cumulus's Repo outright.
    const wrong = await pluginDriver({ ...repo.options, bucket: 'repo-that-does-not-exist' });
    try {
      await expectKind(wrong.list(), 'config', /bucket "repo-that-does-not-exist" does not exist/);
    } finally {
      await wrong.close();
    }
  });

  test('never shows the secret key, and registers it as a secret', async () => {
    const { SecretRegistry } = await import('../../../core/logging/redact.js');
    const secrets = new SecretRegistry();
    const bad = await pluginDriver({ ...repo.options, secretAccessKey: 'a-secret-nobody-may-see' }, secrets);
    try {
      const message = await kindOf(bad.list());
      expect(message).toMatch(/^auth:/);
      expect(message).not.toContain('a-secret-nobody-may-see');
      expect(JSON.stringify(secrets.redact({ line: 'key a-secret-nobody-may-see' }))).not.toContain(
        'a-secret-nobody-may-see',
      );
    } finally {
      await bad.close();
    }
  });
});

describe('nimbus gzip mode', () => {
  let repo: CumulusRepository;
  let driver: NimbusDriver;
  beforeAll(async () => {
    if (skipReason) return;
    repo = await setUpCumulusRepository(started as S3Peer, 'gzip', { compress: 'gzip' });
    driver = directDriver(repo);
  });
  afterAll(async () => {
    await driver?.close();
    await repo?.cleanup();
  });

  test("stores gzip bytes, records the image's size and checksums, and downloads the original", async () => {
    // Compressible content: a raw disk is mostly zeros.
    const data = Buffer.concat([randomBytes(100 * 1024), Buffer.alloc(2 * MiB), randomBytes(1000)]);
    const content = bufferContent(data);
    const image = imageNamed();
    const cloud = await driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 120_000 });
    expect(cloud.size).toBe(data.length);
    expect(cloud.checksums).toEqual({ md5: content.checksums.md5, sha256: content.checksums.sha256 });

    const got = await repo.client.send(new GetObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId }));
    const stored = Buffer.from(await got.Body!.transformToByteArray());
    expect(stored.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(stored.length).toBeLessThan(data.length / 5);
    expect(gunzipSync(stored).equals(data)).toBe(true);
    expect(got.Metadata).toMatchObject({
      'visor-compression': 'gzip',
      'visor-content-size': String(data.length),
      'visor-content-sha256': content.checksums.sha256,
      'visor-content-md5': content.checksums.md5,
    });
    // The ETag is the MD5 of the gzip bytes, which is what Cumulus caches images by.
    expect(got.ETag?.replaceAll('"', '')).toBe(createHash('md5').update(stored).digest('hex'));

    const { stream, size } = await driver.download(cloud.nativeId);
    expect(size).toBe(data.length);
    expect((await buffer(stream)).equals(data)).toBe(true);
    const { stream: slice } = await driver.download(cloud.nativeId, {
      range: { start: 100 * 1024 - 5, end: 100 * 1024 + 4 },
    });
    expect(await buffer(slice)).toEqual(data.subarray(100 * 1024 - 5, 100 * 1024 + 5));
    await expectKind(driver.download(cloud.nativeId, { range: { start: data.length } }), 'invalidInput');
  });

  test('keeps the compression record through metadata updates and moves', async () => {
    const data = randomBytes(300 * 1024);
    const content = bufferContent(data);
    const image = imageNamed();
    const markers = markersOf(image, content);
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    const moved = await driver.updateMetadata(
      cloud.nativeId,
      { ...image, access: 'public', revision: 2 },
      { ...markers, revision: 2 },
    );
    expect(moved.size).toBe(data.length);
    expect(moved.checksums.sha256).toBe(content.checksums.sha256);
    const { stream } = await driver.download(moved.nativeId);
    expect((await buffer(stream)).equals(data)).toBe(true);
  });

  test('fails a download whose gzip bytes were damaged', async () => {
    const data = randomBytes(64 * 1024);
    const content = bufferContent(data);
    const image = imageNamed();
    const cloud = await driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 120_000 });
    const got = await repo.client.send(new GetObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId }));
    const stored = Buffer.from(await got.Body!.transformToByteArray());
    stored[stored.length >> 1] = stored[stored.length >> 1]! ^ 0xff;
    await repo.client.send(
      new PutObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId, Body: stored, Metadata: got.Metadata }),
    );
    const { stream } = await driver.download(cloud.nativeId);
    await expect(buffer(stream)).rejects.toMatchObject({ kind: 'integrity' });
  });
});

describe('nimbus listing across pages', () => {
  let repo: CumulusRepository;
  beforeAll(async () => {
    if (skipReason) return;
    repo = await setUpCumulusRepository(started as S3Peer, 'paging');
  });
  afterAll(async () => {
    await repo?.cleanup();
  });

  test('lists 40 images in pages of 3 (ListObjectsV2 continuation tokens), each once, with its markers', async () => {
    const driver = directDriver(repo, { pageSize: 3, headConcurrency: 4 });
    try {
      const made: Array<{ nativeId: string; markers: Markers }> = [];
      for (let i = 0; i < 16; i++) {
        const content = bufferContent(randomBytes(1024));
        const image = imageNamed({ access: i % 4 === 0 ? 'public' : 'private' });
        const markers = markersOf(image, content);
        made.push({
          nativeId: (await driver.create({ image, markers, content, timeoutMs: 120_000 })).nativeId,
          markers,
        });
      }
      const unmarked: string[] = [];
      for (let i = 0; i < 24; i++)
        unmarked.push(await repo.putUnmarked(i % 2 ? 'own' : 'common', `unmarked-${String(i).padStart(2, '0')}`));
      const listed = await driver.list();
      expect(listed.length).toBe(40);
      expect(new Set(listed.map((i) => i.nativeId)).size).toBe(40);
      for (const m of made) expect(listed.find((i) => i.nativeId === m.nativeId)?.markers).toEqual(m.markers);
      for (const key of unmarked) expect(listed.find((i) => i.nativeId === key)?.markers).toBeUndefined();
    } finally {
      await driver.close();
    }
  });
});
