import { randomBytes } from 'node:crypto';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nimbusOptionsSchema, type NimbusDriver } from '../../../adapters/nimbus/index.js';
import { maxMetadataBytes, metadataBytes } from '../../../adapters/nimbus/mapper.js';
import { isVisorError } from '../../../core/errors.js';
import type { ContentSource } from '../../../core/iaas/port.js';
import type { Image } from '../../../core/image/model.js';
import { bufferContent } from '../../support/content.js';
import { makeImage } from '../../support/images.js';
import { requirePeer } from '../../peers/index.js';
import type { S3Peer } from '../../peers/s3.js';
import { directDriver, setUpCumulusRepository, type CumulusRepository } from './harness.js';

/**
 * What the Nimbus driver refuses before sending anything — names that are not object names,
 * metadata that S3/Cumulus cannot hold — and what it must carry exactly (non-ASCII values,
 * property names in any case), against the real S3 peer. Plus the plugin's options.
 */

const { peer: started, skip: skipReason } = await requirePeer('s3');

const test = (title: string, fn: () => Promise<void>, timeout = 60_000) =>
  it(
    title,
    async (ctx) => {
      if (skipReason) ctx.skip(skipReason);
      await fn();
    },
    timeout,
  );

async function refusal(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isVisorError(error)) throw new Error(`expected a VisorError, got ${String(error)}`);
  return { kind: error.kind, message: error.message };
}

describe('nimbus: refused and carried input', () => {
  let repo: CumulusRepository;
  let driver: NimbusDriver;
  const content: ContentSource = bufferContent(randomBytes(4096));
  // Fields are set after newImage: the driver must refuse what the generic validation would let through, and more.
  const attempt = (fields: Partial<Image>) => {
    const image: Image = {
      ...makeImage({
        name: `ok-${randomBytes(3).toString('hex')}`,
        access: 'private',
        diskFormat: 'raw',
        containerFormat: 'bare',
      }),
      ...fields,
    };
    return driver.create({
      image,
      markers: { agent: 'input-test', imageId: image.id, sha256: content.checksums.sha256, revision: 1 },
      content,
      timeoutMs: 120_000,
    });
  };
  const expectUntouched = async (before: string[]) => {
    expect(await repo.keys()).toEqual(before);
    expect(await repo.pendingUploads()).toEqual([]);
  };

  beforeAll(async () => {
    if (skipReason) return;
    repo = await setUpCumulusRepository(started as S3Peer, 'input');
    driver = directDriver(repo);
  });
  afterAll(async () => {
    await driver?.close();
    await repo?.cleanup();
  });

  test('refuses hostile and unusable names, uploading nothing', async () => {
    const before = await repo.keys();
    const names = [
      '../x',
      '..',
      'a/b',
      '/etc/passwd',
      'a\u0000b',
      'tab\there',
      'new\nline',
      'bell\u0007',
      'with space',
      '.hidden',
      '-dash',
      'x..y',
      'ünïcode',
      'a'.repeat(256),
      'cumulus://Repo/VMS/x',
    ];
    for (const name of names) {
      const { kind, message } = await refusal(attempt({ name }));
      expect(kind, name).toBe('invalidInput');
      expect(message).toMatch(/cannot be used/);
      // Control characters are shown escaped, never raw, in the message.
      expect(message).not.toMatch(/[\u0000-\u001f]/);
    }
    await expectUntouched(before);
  });

  test('refuses metadata beyond 2 KiB with one clear invalidInput, uploading nothing', async () => {
    const before = await repo.keys();
    const properties = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`property_${i}`, 'x'.repeat(50)]));
    const { kind, message } = await refusal(attempt({ properties }));
    expect(kind).toBe('invalidInput');
    expect(message).toMatch(/needs \d+ bytes of object metadata, more than the 2048/);
    expect(message).toMatch(/largest: visor-properties \d+/);
    await expectUntouched(before);

    const { kind: k2, message: m2 } = await refusal(attempt({ os: { type: 'linux', distro: 'd'.repeat(300) } }));
    expect(k2).toBe('invalidInput');
    expect(m2).toMatch(/visor-os-distro would be 300 characters/);
    await expectUntouched(before);
  });

  test('fills the 2 KiB almost to the byte, and the server keeps all of it', async () => {
    // Grow one property until the next character would not fit: the limit is the server's, not a guess.
    const image = makeImage({
      name: `full-${randomBytes(3).toString('hex')}`,
      access: 'private',
      diskFormat: 'raw',
      containerFormat: 'bare',
      properties: { filler: '' },
    });
    const { toObjectMetadata } = await import('../../../adapters/nimbus/mapper.js');
    const markers = { agent: 'input-test', imageId: image.id, sha256: content.checksums.sha256, revision: 1 };
    const info = {
      compression: 'none' as const,
      size: content.size,
      md5: content.checksums.md5,
      sha256: content.checksums.sha256,
    };
    const fits = (filler: string) => {
      try {
        return metadataBytes(toObjectMetadata({ ...image, properties: { filler } }, markers, info)) <= maxMetadataBytes;
      } catch {
        return false;
      }
    };
    let filler = '';
    while (fits(`${filler}y`)) filler += 'y';
    const full = { ...image, properties: { filler } };
    expect(metadataBytes(toObjectMetadata(full, markers, info))).toBeGreaterThan(maxMetadataBytes - 20);
    const cloud = await driver.create({ image: full, markers, content, timeoutMs: 120_000 });
    expect(cloud.metadata.properties).toEqual({ filler });
    await expect(
      refusal(
        driver.create({
          image: { ...full, name: `${full.name}-more`, properties: { filler: `${filler}yy` } },
          markers,
          content,
          timeoutMs: 120_000,
        }),
      ),
    ).resolves.toMatchObject({ kind: 'invalidInput' });
  });

  test('carries non-ASCII values, odd property names and tags exactly, as ASCII headers', async () => {
    const properties = {
      MixedCase_Key: 'Wert mit Ümlauten',
      'hw:cpu-policy': 'значение',
      padded: '  leading and trailing  ',
      empty: '',
      encodedLooking: '=?UTF-8?B?x?=',
      emoji: '🐧 penguin',
      control: 'a\u0000b\nc',
    };
    const tags = ['golden', 'with space', 'ünï', '=?UTF-8?B??='];
    const os = { type: 'linux', distro: 'Débian', version: ' 12 ' };
    const image = makeImage({
      name: `utf-${randomBytes(3).toString('hex')}`,
      access: 'public',
      diskFormat: 'raw',
      containerFormat: 'bare',
      properties,
      tags,
      os,
      minDisk: 3,
      minRam: 1024,
      virtualSize: 4096,
      architecture: 'aarch64',
      type: 'machine',
    });
    const markers = { agent: 'agent with spaces ü', imageId: image.id, sha256: content.checksums.sha256, revision: 7 };
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    const got = await driver.get(cloud.nativeId);
    expect(got.markers).toEqual(markers);
    expect(got.metadata).toEqual({
      name: image.name,
      architecture: 'aarch64',
      type: 'machine',
      minDisk: 3,
      minRam: 1024,
      os,
      tags,
      properties,
      virtualSize: 4096,
    });
    expect(got.diskFormat).toBe('raw');
    expect(got.containerFormat).toBe('bare');
    const head = await repo.client.send(new HeadObjectCommand({ Bucket: repo.bucket, Key: cloud.nativeId }));
    for (const [key, value] of Object.entries(head.Metadata ?? {}))
      expect(`${key}: ${value}`).toMatch(/^[\x21-\x7e][\x20-\x7e]*$/);
  });

  test('refuses formats Nimbus cannot run, before any request', async () => {
    const before = await repo.keys();
    const image = makeImage({ name: 'qcow', diskFormat: 'qcow2' });
    const qcow = bufferContent(randomBytes(1024), 'qcow2');
    await expect(
      refusal(
        driver.create({
          image,
          markers: { agent: 'a', imageId: image.id, sha256: qcow.checksums.sha256, revision: 1 },
          content: qcow,
          timeoutMs: 120_000,
        }),
      ),
    ).resolves.toMatchObject({ kind: 'unsupported' });
    const ova = bufferContent(randomBytes(1024), 'raw', { containerFormat: 'ova' });
    await expect(
      refusal(
        driver.create({
          image,
          markers: { agent: 'a', imageId: image.id, sha256: ova.checksums.sha256, revision: 1 },
          content: ova,
          timeoutMs: 120_000,
        }),
      ),
    ).resolves.toMatchObject({ kind: 'unsupported' });
    await expectUntouched(before);
  });
});

describe('nimbus plugin options', () => {
  const base = {
    endpoint: 'http://cumulus.example.org:8888',
    accessKeyId: 'Ar2yXcfdhImjMNeWGUHJZ',
    secretAccessKey: 'secret',
    canonicalId: '21161ebe-862a-11df-a9ca-001de0a80259',
  };

  it("defaults to Nimbus's own layout: bucket Repo, prefix VMS/, folder common, no compression", () => {
    expect(nimbusOptionsSchema.parse(base)).toMatchObject({
      bucket: 'Repo',
      prefix: 'VMS/',
      commonFolder: 'common',
      compress: 'none',
      pageSize: 1000,
      timeouts: { request: 60 },
    });
    // A create's deadline is the caller's (sync.timeouts.action): the old option still loads, and does nothing.
    const old = nimbusOptionsSchema.parse({ ...base, timeouts: { transfer: 60 } });
    expect(old.timeouts).toEqual({ request: 60, transfer: 60 });
    expect(nimbusOptionsSchema.parse({ ...base, prefix: 'VMS' }).prefix).toBe('VMS/');
    expect(nimbusOptionsSchema.parse({ ...base, prefix: 'sites/a/VMS/' }).prefix).toBe('sites/a/VMS/');
  });

  it('names every bad option at once', () => {
    const result = nimbusOptionsSchema.safeParse({
      ...base,
      endpoint: 'ftp://x',
      canonicalId: 'a/b',
      prefix: '../VMS',
      compress: 'bzip2',
      partSize: 1024,
      bogus: true,
    });
    expect(result.success).toBe(false);
    const paths = result.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['endpoint', 'canonicalId', 'prefix', 'compress', 'partSize', '']));
    expect(nimbusOptionsSchema.safeParse({ ...base, canonicalId: 'common' }).error?.issues[0]?.path).toEqual([
      'canonicalId',
    ]);
    expect(
      nimbusOptionsSchema.safeParse({ ...base, ec2: { endpoint: 'https://nimbus:8444/', signatureVersion: 3 } })
        .success,
    ).toBe(false);
  });
});
