import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBundleIdentity } from '../../../adapters/eucalyptus/driver-bundle-crypto.js';
import { bundleNameOf } from '../../../adapters/eucalyptus/mapper.js';
import { isVisorError } from '../../../core/errors.js';
import { newImage } from '../../../core/image/image.js';
import type { ImageDraft } from '../../../core/image/model.js';
import { bufferContent, randomImageBytes } from '../../support/content.js';
import { expectValidBodies, startWorld, type EucalyptusWorld } from './harness.js';

/**
 * The double is an honest CLC: it refuses what a Eucalyptus CLC refuses (a manifest signed by
 * someone else, encrypted for another cloud, names it does not take, too many tags), and a
 * bundle it cannot use ends `failed`; the driver reports each and leaves nothing registered.
 */

const started = await startWorld('euca-double');
const skip = 'skip' in started ? started.skip : undefined;
const world = 'skip' in started ? undefined : (started as EucalyptusWorld);
afterAll(async () => {
  if (!world) return;
  try {
    await expectValidBodies(world.doubles);
  } finally {
    await world.close();
  }
});

const request = () => {
  const content = bufferContent(randomImageBytes(64 * 1024));
  const image = newImage({
    name: `double-${randomUUID().slice(0, 8)}`,
    architecture: 'x86_64',
    access: 'private',
  } as ImageDraft);
  return {
    image,
    markers: { agent: 'double-test', imageId: image.id, sha256: content.checksums.sha256, revision: 1 },
    content,
    timeoutMs: 120_000,
  };
};

const test = (title: string, fn: () => Promise<void>) =>
  it(title, async (ctx) => {
    if (skip) ctx.skip(skip);
    await fn();
  }, 120_000);

describe('the EC2 double as a CLC', () => {
  test('refuses a manifest signed with another key (InvalidManifest), and nothing stays registered', async () => {
    const double = await world!.double();
    const c = world!.certs;
    // The other user's key and certificate sign and encrypt; the cloud knows only the real user's certificate.
    const stranger = loadBundleIdentity({
      userCertificate: c.otherCertificate,
      userPrivateKey: c.otherPrivateKey,
      cloudCertificate: c.cloudCertificate,
    });
    const driver = world!.driver(double, { identity: stranger });
    const r = request();
    const error = await driver.create(r).catch((e: unknown) => e);
    expect(isVisorError(error, 'invalidInput')).toBe(true);
    expect(String((error as Error).message)).toMatch(/InvalidManifest/);
    expect(double.images()).toEqual([]);
    expect(await world!.keys(`bundles/${bundleNameOf(r.markers)}.`)).toEqual([]);
  });

  test('refuses a bundle encrypted for another cloud', async () => {
    const double = await world!.double();
    const c = world!.certs;
    const otherCloud = loadBundleIdentity({
      userCertificate: c.userCertificate,
      userPrivateKey: c.userPrivateKey,
      cloudCertificate: c.otherCertificate,
    });
    const error = await world!
      .driver(double, { identity: otherCloud })
      .create(request())
      .catch((e: unknown) => e);
    expect(isVisorError(error, 'invalidInput')).toBe(true);
    expect(String((error as Error).message)).toMatch(/decrypt ec2_encrypted_key/);
  });

  test('a bundle the cloud cannot use ends failed: reported as unavailable, deregistered', async () => {
    const double = await world!.double();
    double.failNextBundle('Failed to download the image parts');
    const r = request();
    const error = await world!
      .driver(double)
      .create(r)
      .catch((e: unknown) => e);
    expect(isVisorError(error, 'unavailable')).toBe(true);
    expect(String((error as Error).message)).toContain('failed (Failed to download the image parts)');
    expect(double.images().map((i) => i.state)).toEqual(['deregistered']);
  });

  test('keeps at most maxTags tags: TagLimitExceeded when the driver is told more', async () => {
    const double = await world!.double({ maxTags: 10 });
    const r = request();
    r.image.properties = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`p${i}`, 'v']));
    const tooMany = await world!
      .driver(double)
      .create(r)
      .catch((e: unknown) => e);
    expect(isVisorError(tooMany, 'invalidInput')).toBe(true);
    expect(String((tooMany as Error).message)).toContain('TagLimitExceeded');
    expect(double.images().map((i) => i.state)).toEqual(['deregistered']);
    // Told the limit, the driver refuses before sending anything.
    const calls = double.calls.length;
    const refused = await world!
      .driver(double, { maxTags: 10 })
      .create(request())
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(refused).toBeUndefined();
    const again = request();
    again.image.properties = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`p${i}`, 'v']));
    const early = await world!
      .driver(double, { maxTags: 10 })
      .create(again)
      .catch((e: unknown) => e);
    expect(isVisorError(early, 'invalidInput')).toBe(true);
    expect(double.calls.slice(calls).filter((c) => c.action === 'RegisterImage')).toHaveLength(1);
  });
});
