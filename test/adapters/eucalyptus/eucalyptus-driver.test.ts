import { createHash, randomUUID } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifest } from '../../../adapters/eucalyptus/mapper-manifest.js';
import { verifyManifestText } from '../../../adapters/eucalyptus/driver-bundle-crypto.js';
import { bundleNameOf, ec2MarkerKeys, hiddenTagKey, metaTagKey } from '../../../adapters/eucalyptus/mapper.js';
import type { EucalyptusDriver } from '../../../adapters/eucalyptus/index.js';
import { isVisorError, type ErrorKind } from '../../../core/errors.js';
import type { ContentSource, Markers } from '../../../core/iaas/port.js';
import { newImage } from '../../../core/image/image.js';
import type { Image, ImageDraft } from '../../../core/image/model.js';
import type { Logger } from '../../../core/logging/logger.js';
import { bufferContent, randomImageBytes } from '../../support/content.js';
import type { Ec2Double } from '../../doubles/ec2/index.js';
import {
  accessKeyId,
  accountId,
  expectValidBodies,
  secretAccessKey,
  startWorld,
  type EucalyptusWorld,
} from './harness.js';

/**
 * The Eucalyptus driver against the EC2 double and the real S3 peer: what lands in Walrus and
 * in the CLC, retiring, resuming, the description fallback, kernels and ramdisks, errors.
 */

const started = await startWorld('euca-driver');
const skip = 'skip' in started ? started.skip : undefined;
const world = 'skip' in started ? undefined : (started as EucalyptusWorld);

interface Line {
  level: string;
  message: string;
  meta: Record<string, unknown>;
}
function capturingLogger(lines: Line[]): Logger {
  const log =
    (level: string) =>
    (message: string, meta: Record<string, unknown> = {}) =>
      void lines.push({ level, message, meta });
  const logger: Logger = {
    error: log('error'),
    warn: log('warn'),
    info: log('info'),
    debug: log('debug'),
    child: () => logger,
  };
  return logger;
}

async function expectKind(promise: Promise<unknown>, kind: ErrorKind): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error, `expected a ${kind} error`).toBeDefined();
  expect(isVisorError(error) ? `${error.kind}: ${error.message}` : String(error)).toMatch(new RegExp(`^${kind}:`));
  return error!;
}

function imageFor(content: ContentSource, draft: Partial<ImageDraft> = {}): { image: Image; markers: Markers } {
  const image = newImage({
    name: `visor euca test ${randomUUID().slice(0, 8)}`,
    architecture: 'x86_64',
    diskFormat: content.diskFormat,
    containerFormat: content.containerFormat,
    access: 'private',
    os: { type: 'linux', distro: 'debian', version: '12' },
    minRam: 512,
    tags: ['golden', 'debian'],
    properties: { description: 'Debian 12 for the visor tests', hw_disk_bus: 'virtio' },
    ...draft,
  } as ImageDraft);
  return {
    image,
    markers: {
      agent: 'euca-driver-test',
      imageId: image.id,
      sha256: content.checksums.sha256,
      revision: image.revision,
    },
  };
}

const it_ = (title: string, fn: () => Promise<void>, timeout = 120_000) =>
  it(
    title,
    async (ctx) => {
      if (skip) ctx.skip(skip);
      await fn();
    },
    timeout,
  );

afterAll(async () => {
  if (!world) return;
  try {
    await expectValidBodies(world.doubles);
  } finally {
    await world.close();
  }
});

describe('Eucalyptus driver', () => {
  let double: Ec2Double;
  let driver: EucalyptusDriver;
  const lines: Line[] = [];

  beforeAll(async () => {
    if (!world) return;
    double = await world.double();
    driver = world.driver(double, { logger: capturingLogger(lines) });
  });

  it_('bundles into Walrus and registers what the CLC unbundles to exactly the image', async () => {
    const data = randomImageBytes(700 * 1024 + 3);
    const content = bufferContent(data);
    const { image, markers } = imageFor(content);
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    expect(cloud).toMatchObject({
      state: 'active',
      name: image.name,
      access: 'private',
      size: data.length,
      diskFormat: 'raw',
      markers,
    });
    expect(cloud.nativeId).toMatch(/^emi-[0-9a-f]{8}$/);

    // The CLC (openssl + gzip + tar, not the adapter's code) got the very bytes back.
    await double.idle();
    expect(double.bundleChecks.get(cloud.nativeId)).toEqual({
      ok: true,
      size: data.length,
      sha256: content.checksums.sha256,
      md5: content.checksums.md5,
    });

    const name = bundleNameOf(markers);
    const stored = double.image(cloud.nativeId)!;
    expect(stored.location).toBe(`${world!.bucket}/bundles/${name}.manifest.xml`);
    expect(stored).toMatchObject({
      virtualizationType: 'hvm',
      architecture: 'x86_64',
      type: 'machine',
      rootDeviceType: 'instance-store',
      description: 'Debian 12 for the visor tests',
    });
    expect(stored.name).toMatch(/^visor_euca_test_[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/);
    expect(Object.fromEntries(stored.tags)).toMatchObject({
      [ec2MarkerKeys.agent]: markers.agent,
      [ec2MarkerKeys.imageId]: markers.imageId,
      [ec2MarkerKeys.sha256]: markers.sha256,
      [ec2MarkerKeys.revision]: '1',
      Name: image.name,
      hw_disk_bus: 'virtio',
      [metaTagKey]: 'os-type=linux&os-distro=debian&os-version=12&min-ram=512&tag=golden&tag=debian',
    });

    // What is in the bucket: the parts the manifest lists, and the manifest, nothing else.
    const keys = await world!.keys(`bundles/${name}.`);
    const manifestXml = (
      await world!.s3.send(
        new (
          await import('@aws-sdk/client-s3')
        ).GetObjectCommand({ Bucket: world!.bucket, Key: `bundles/${name}.manifest.xml` }),
      )
    ).Body!;
    const manifest = parseManifest(await manifestXml.transformToString(), 'test');
    expect(keys).toEqual(
      [...manifest.image.parts.part.map((p) => `bundles/${p.filename}`), `bundles/${name}.manifest.xml`].sort(),
    );
    expect(manifest.image.parts.part.length).toBeGreaterThan(2);
    expect(manifest.image).toMatchObject({ name, user: accountId, type: 'machine', size: data.length });
    expect(verifyManifestText(world!.certs.identity.userCertificate, manifest.signed, manifest.signature)).toBe(true);
  });

  it_('signs with SigV2 (HmacSHA256 and HmacSHA1) where the cloud needs it, and the CLC checks it', async () => {
    for (const signatureMethod of ['HmacSHA256', 'HmacSHA1'] as const) {
      const v2 = world!.driver(double, {
        ec2: {
          endpoint: double.endpoint,
          region: 'eucalyptus',
          accessKeyId,
          secretAccessKey,
          signatureVersion: 'v2',
          signatureMethod,
          maxAttempts: 1,
        },
      });
      const before = double.calls.length;
      expect((await v2.list()).length).toBeGreaterThan(0);
      const seen = double.calls.slice(before);
      expect(seen.length).toBeGreaterThan(0);
      expect(
        seen.every(
          (c) =>
            c.signature === 'v2' &&
            c.params['SignatureMethod'] === signatureMethod &&
            c.params['SignatureVersion'] === '2',
        ),
      ).toBe(true);
    }
    const wrong = world!.driver(double, {
      ec2: {
        endpoint: double.endpoint,
        region: 'eucalyptus',
        accessKeyId,
        secretAccessKey: 'wrong',
        signatureVersion: 'v2',
        maxAttempts: 1,
      },
    });
    await expectKind(wrong.list(), 'auth');
  });

  it_('sends the configured API Version, and is answered in its namespace', async () => {
    const old = world!.driver(double, {
      ec2: {
        endpoint: double.endpoint,
        region: 'eucalyptus',
        accessKeyId,
        secretAccessKey,
        apiVersion: '2010-08-31',
        maxAttempts: 1,
      },
    });
    const before = double.responses.length;
    await old.list();
    expect(double.calls.at(-1)?.params['Version']).toBe('2010-08-31');
    expect(
      double.responses.slice(before).every((r) => r.body.includes('xmlns="http://ec2.amazonaws.com/doc/2010-08-31/"')),
    ).toBe(true);
  });

  it_('retires by delete: deregistered, and no object left under the bundle prefix', async () => {
    const content = bufferContent(randomImageBytes(300 * 1024));
    const { image, markers } = imageFor(content);
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    const name = bundleNameOf(markers);
    expect((await world!.keys(`bundles/${name}.`)).length).toBeGreaterThan(1);
    await driver.retire(cloud.nativeId, 'delete');
    expect(await world!.keys(`bundles/${name}.`)).toEqual([]);
    // Eucalyptus keeps listing a deregistered image for a while: the driver does not.
    expect(double.image(cloud.nativeId)?.state).toBe('deregistered');
    await expectKind(driver.get(cloud.nativeId), 'notFound');
    expect((await driver.list()).some((i) => i.nativeId === cloud.nativeId)).toBe(false);
  });

  it_('refuses to delete an image instances still use, and deletes nothing', async () => {
    const content = bufferContent(randomImageBytes(100 * 1024));
    const { image, markers } = imageFor(content);
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    const instance = double.runInstance(cloud.nativeId);
    expect(await driver.get(cloud.nativeId)).toMatchObject({ inUse: true, state: 'active' });
    expect((await driver.list()).find((c) => c.nativeId === cloud.nativeId)).toMatchObject({ inUse: true });
    const deregisters = () => double.calls.filter((c) => c.action === 'DeregisterImage').length;
    const before = deregisters();
    const error = await expectKind(driver.retire(cloud.nativeId, 'delete'), 'conflict');
    expect(error.message).toContain(instance.id);
    // Refused by the driver itself (AWS would deregister an image in use): DeregisterImage never sent.
    expect(deregisters()).toBe(before);
    expect((await world!.keys(`bundles/${bundleNameOf(markers)}.`)).length).toBeGreaterThan(1);
    expect((await driver.get(cloud.nativeId)).state).toBe('active');
    // A stopped instance can start again from the image: it still holds it.
    double.terminateInstance(instance.id);
    const stopped = double.runInstance(cloud.nativeId, 'stopped');
    await expectKind(driver.retire(cloud.nativeId, 'delete'), 'conflict');
    double.terminateInstance(stopped.id);
    expect(await driver.get(cloud.nativeId)).toMatchObject({ inUse: false });
    await driver.retire(cloud.nativeId, 'delete');
    expect(deregisters()).toBe(before + 1);
    await expectKind(driver.get(cloud.nativeId), 'notFound');
  });

  it_('where DescribeInstances is refused, says it cannot tell, and lists and deletes as before', async () => {
    const lines: Line[] = [];
    const blind = world!.driver(double, { logger: capturingLogger(lines) });
    double.failNext('DescribeInstances', 'UnauthorizedOperation', 403);
    const content = bufferContent(randomImageBytes(64 * 1024));
    const { image, markers } = imageFor(content);
    const cloud = await blind.create({ image, markers, content, timeoutMs: 120_000 });
    expect(blind.capabilities.detectsInUse).toBe(true);
    const listed = await blind.list();
    expect(blind.capabilities.detectsInUse).toBe(false);
    expect(listed.find((c) => c.nativeId === cloud.nativeId)).toMatchObject({ inUse: false });
    expect(lines.some((l) => l.level === 'warn' && /DescribeInstances is refused/.test(l.message))).toBe(true);
    // Asked once only: later calls do not try again.
    const asked = double.calls.filter((c) => c.action === 'DescribeInstances').length;
    await blind.get(cloud.nativeId);
    expect(double.calls.filter((c) => c.action === 'DescribeInstances').length).toBe(asked);
    // The cloud's own refusal is then the only guard (Eucalyptus: InvalidAMIID.Unavailable).
    const instance = double.runInstance(cloud.nativeId);
    await expectKind(blind.retire(cloud.nativeId, 'delete'), 'conflict');
    double.terminateInstance(instance.id);
    await blind.retire(cloud.nativeId, 'delete');
    // Any other failure is not taken for "not in use": the listing fails.
    const other = world!.driver(double);
    double.failNext('DescribeInstances', 'InternalError', 500);
    await expectKind(other.list(), 'unavailable');
    expect(other.capabilities.detectsInUse).toBe(true);
  });

  it_('reveals a hidden image: the hidden stamp removed, access given back by the update, same AMI', async () => {
    const content = bufferContent(randomImageBytes(64 * 1024));
    const { image, markers } = imageFor(content, { access: 'public' });
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    await driver.retire(cloud.nativeId, 'hide');
    expect(await driver.get(cloud.nativeId)).toMatchObject({ hidden: true, access: 'private' });
    const registers = double.calls.filter((c) => c.action === 'RegisterImage').length;
    await driver.reveal(cloud.nativeId);
    expect(double.image(cloud.nativeId)!.tags.has(hiddenTagKey)).toBe(false);
    const shown = await driver.updateMetadata(cloud.nativeId, image, markers);
    expect(shown).toMatchObject({ nativeId: cloud.nativeId, hidden: false, access: 'public', state: 'active' });
    expect(double.calls.filter((c) => c.action === 'RegisterImage').length).toBe(registers);
    expect(driver.capabilities.reveals).toEqual(['hide']);
  });

  it_('hides by taking every launch permission away; updates keep a hidden image private', async () => {
    const content = bufferContent(randomImageBytes(100 * 1024));
    const { image, markers } = imageFor(content, { access: 'public' });
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    expect(cloud.access).toBe('public');
    double.image(cloud.nativeId)!.launchUsers.add('210987654321');
    await driver.retire(cloud.nativeId, 'hide');
    const stored = double.image(cloud.nativeId)!;
    expect(stored.isPublic).toBe(false);
    expect([...stored.launchUsers]).toEqual([]);
    expect(stored.tags.get(hiddenTagKey)).toMatch(/^\d{4}-\d\d-\d\dT/);
    const hidden = await driver.get(cloud.nativeId);
    expect(hidden).toMatchObject({ hidden: true, access: 'private', markers, state: 'active' });
    const updated = await driver.updateMetadata(
      cloud.nativeId,
      { ...image, revision: 2, properties: { ...image.properties, extra: 'yes' } },
      { ...markers, revision: 2 },
    );
    expect(updated).toMatchObject({ hidden: true, access: 'private' });
    expect(updated.metadata.properties).toMatchObject({ extra: 'yes' });
    await expectKind(driver.retire(cloud.nativeId, 'disable'), 'unsupported');
  });

  it_('creating the same content again reuses the registration and sends no part again', async () => {
    const content = bufferContent(randomImageBytes(600 * 1024));
    const { image, markers } = imageFor(content);
    const first = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    lines.length = 0;
    const second = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    expect(second.nativeId).toBe(first.nativeId);
    const uploaded = lines.find((l) => l.message === 'eucalyptus: bundle uploaded');
    expect(uploaded?.meta).toMatchObject({ reused: uploaded?.meta['parts'] });
    expect(Number(uploaded?.meta['parts'])).toBeGreaterThan(1);
    expect(lines.some((l) => l.message === 'eucalyptus: the bundle was already registered; that image is taken')).toBe(
      true,
    );
  });

  it_('after a retryable failure keeps the parts, and the retry does not send them again', async () => {
    const content = bufferContent(randomImageBytes(600 * 1024));
    const { image, markers } = imageFor(content);
    const name = bundleNameOf(markers);
    double.failNext('RegisterImage', 'ServiceUnavailable', 503);
    await expectKind(driver.create({ image, markers, content, timeoutMs: 120_000 }), 'unavailable');
    const left = await world!.keys(`bundles/${name}.`);
    expect(left.length).toBeGreaterThan(1);
    expect(left.some((k) => k.endsWith('.manifest.xml'))).toBe(false);
    expect(double.images().some((i) => i.location?.endsWith(`${name}.manifest.xml`))).toBe(false);
    lines.length = 0;
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    expect(cloud.state).toBe('active');
    const uploaded = lines.find((l) => l.message === 'eucalyptus: bundle uploaded');
    expect(uploaded?.meta['reused']).toBe(left.length);
    expect(uploaded?.meta['parts']).toBe(left.length);
  });

  it_('after a failure that a retry cannot fix, deregisters and removes everything', async () => {
    const content = bufferContent(randomImageBytes(300 * 1024));
    const { image, markers } = imageFor(content);
    const name = bundleNameOf(markers);
    double.failNext('CreateTags', 'UnauthorizedOperation', 403);
    await expectKind(driver.create({ image, markers, content, timeoutMs: 120_000 }), 'forbidden');
    expect(await world!.keys(`bundles/${name}.`)).toEqual([]);
    const registered = double.images().filter((i) => i.location?.endsWith(`${name}.manifest.xml`));
    expect(registered.map((i) => i.state)).toEqual(['deregistered']);
  });

  it_('refuses lying content before registering anything, and leaves no object', async () => {
    const data = randomImageBytes(500 * 1024);
    for (const content of [
      bufferContent(data, 'raw', { lie: true }),
      { ...bufferContent(data), size: data.length - 1 },
    ]) {
      const { image, markers } = imageFor(content);
      const registers = double.calls.filter((c) => c.action === 'RegisterImage').length;
      await expectKind(driver.create({ image, markers, content, timeoutMs: 120_000 }), 'integrity');
      expect(double.calls.filter((c) => c.action === 'RegisterImage').length).toBe(registers);
      expect(await world!.keys(`bundles/${bundleNameOf(markers)}.`)).toEqual([]);
    }
  });

  it_('refuses what EC2 cannot hold before sending anything', async () => {
    const content = bufferContent(randomImageBytes(10 * 1024));
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`p${i}`, 'x']));
    const cases: Array<[Partial<ImageDraft>, ErrorKind, ContentSource?]> = [
      [{ properties: many }, 'invalidInput'],
      [{ properties: { 'aws:thing': 'x' } }, 'invalidInput'],
      [{ properties: { long: 'x'.repeat(256) } }, 'invalidInput'],
      [{ architecture: 's390x' }, 'unsupported'],
      [{}, 'invalidInput', bufferContent(randomImageBytes(1024), 'ami', { containerFormat: 'ami' })],
      [{}, 'unsupported', bufferContent(randomImageBytes(1024), 'qcow2')],
    ];
    const before = await world!.keys();
    const calls = double.calls.length;
    for (const [draft, kind, source] of cases) {
      const c = source ?? content;
      const { image, markers } = imageFor(c, draft);
      await expectKind(driver.create({ image, markers, content: c, timeoutMs: 120_000 }), kind);
    }
    expect(await world!.keys()).toEqual(before);
    expect(double.calls.slice(calls).every((c) => c.action === 'DescribeTags')).toBe(true);
  });

  it_('registers kernels and ramdisks, and paravirtual machines with the configured EKI/ERI', async () => {
    const kernelContent = bufferContent(randomImageBytes(64 * 1024), 'aki', { containerFormat: 'aki' });
    const k = imageFor(kernelContent, { type: 'kernel', name: 'vmlinuz-6.1' });
    const kernel = await driver.create({ ...k, content: kernelContent, timeoutMs: 120_000 });
    expect(kernel.nativeId).toMatch(/^eki-/);
    expect(kernel).toMatchObject({ diskFormat: 'aki', metadata: { type: 'kernel' } });
    const ramdiskContent = bufferContent(randomImageBytes(64 * 1024), 'ari', { containerFormat: 'ari' });
    const r = imageFor(ramdiskContent, { type: 'ramdisk', name: 'initrd-6.1' });
    const ramdisk = await driver.create({ ...r, content: ramdiskContent, timeoutMs: 120_000 });
    expect(ramdisk.nativeId).toMatch(/^eri-/);

    const pv = world!.driver(double, { kernelId: kernel.nativeId, ramdiskId: ramdisk.nativeId });
    const machineContent = bufferContent(randomImageBytes(128 * 1024), 'ami', { containerFormat: 'ami' });
    const m = imageFor(machineContent);
    const machine = await pv.create({ ...m, content: machineContent, timeoutMs: 120_000 });
    expect(machine).toMatchObject({ diskFormat: 'ami', containerFormat: 'ami' });
    expect(double.image(machine.nativeId)).toMatchObject({
      virtualizationType: 'paravirtual',
      kernelId: kernel.nativeId,
      ramdiskId: ramdisk.nativeId,
    });
    await double.idle();
    expect(double.bundleChecks.get(machine.nativeId)?.sha256).toBe(machineContent.checksums.sha256);
    for (const id of [machine.nativeId, ramdisk.nativeId, kernel.nativeId]) await driver.retire(id, 'delete');
  });

  it_('downloads a range, and refuses a bundle whose part was tampered with', async () => {
    const data = randomImageBytes(400 * 1024 + 7);
    const content = bufferContent(data);
    const { image, markers } = imageFor(content);
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    const part = await driver.download(cloud.nativeId, { range: { start: 1000, end: 300_000 } });
    expect(part.size).toBe(299_001);
    expect((await buffer(part.stream)).equals(data.subarray(1000, 300_001))).toBe(true);

    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    const key = `bundles/${bundleNameOf(markers)}.part.01`;
    await world!.s3.send(new PutObjectCommand({ Bucket: world!.bucket, Key: key, Body: randomImageBytes(256 * 1024) }));
    const { stream } = await driver.download(cloud.nativeId);
    const error = await buffer(stream).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVisorError(error, 'integrity')).toBe(true);
    expect(createHash('sha256').update(data).digest('hex')).toBe(content.checksums.sha256);
  });

  it_('maps EC2 errors to kinds', async () => {
    const cases: Array<[string, number, ErrorKind]> = [
      ['RequestLimitExceeded', 503, 'unavailable'],
      ['Throttling', 400, 'unavailable'],
      ['UnauthorizedOperation', 403, 'forbidden'],
      ['AuthFailure', 401, 'auth'],
      ['InvalidParameterValue', 400, 'invalidInput'],
      ['InternalError', 500, 'unavailable'],
    ];
    for (const [code, status, kind] of cases) {
      double.failNext('DescribeImages', code, status);
      const error = await expectKind(driver.list(), kind);
      expect(error.message).toContain(code);
      expect(error.message).not.toContain(secretAccessKey);
    }
    await expectKind(driver.get('emi-00000000'), 'notFound');
    await expectKind(driver.get('not-an-image-id'), 'notFound');
  });
});

describe('Eucalyptus driver on a cloud without tags', () => {
  it_('finds out by the error code, says so in its capabilities, and keeps markers in the Description', async () => {
    const double = await world!.double({ tags: false });
    const driver = world!.driver(double, { tagsSupported: 'auto' });
    expect(driver.capabilities.properties).toBe(true);
    await driver.list();
    expect(driver.capabilities).toMatchObject({ properties: false, tags: false });
    const content = bufferContent(randomImageBytes(50 * 1024));
    const { image, markers } = imageFor(content, { properties: { description: 'plain words' } });
    const cloud = await driver.create({ image, markers, content, timeoutMs: 120_000 });
    expect(cloud.markers).toEqual(markers);
    expect(cloud.name).toBe(image.name);
    const description = double.image(cloud.nativeId)!.description!;
    expect(description).toMatch(
      new RegExp(
        String.raw`^plain words \[visor agent=euca-driver-test image-id=[0-9a-f-]{36} ` +
          String.raw`sha256=[0-9a-f]{64} revision=1 name=visor%20euca%20test%20[0-9a-f]{8}\]$`,
      ),
    );
    expect(description.length).toBeLessThanOrEqual(255);
    expect(double.calls.filter((c) => c.action === 'DescribeTags').length).toBe(1);
    expect(double.calls.some((c) => c.action === 'CreateTags')).toBe(false);
    await driver.retire(cloud.nativeId, 'hide');
    expect(await driver.get(cloud.nativeId)).toMatchObject({ hidden: true, markers });
    await driver.retire(cloud.nativeId, 'delete');
  });
});
