import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { iaasConformance } from '../../testing/iaas-conformance.js';
import { bufferContent, randomImageBytes } from '../../testing/content.js';
import { isVisorError } from '../../errors.js';
import { newImage } from '../../image/image.js';
import type { ContentSource, Markers } from '../port.js';
import { MemoryCloud } from './client.js';
import { MemoryDriver } from './driver.js';
import { toCloudImage, toNativeFields } from './mapper.js';
import { parseNativeImage } from './schema.js';

const cloud = new MemoryCloud({ name: 'conformance', activationMs: 5 });

iaasConformance('memory', async () => ({
  driver: async () => new MemoryDriver({ cloud, project: 'p1' }),
  pagedDriver: async (pageSize) => new MemoryDriver({ cloud, project: 'p1', pageSize }),
  otherOwnerDriver: async () => new MemoryDriver({ cloud, project: 'p2' }),
  createUnmarked: async (name) => (await cloud.create('p1', { name, disk_format: 'raw', container_format: 'bare' })).id,
  notes: { badCredentials: 'the memory cloud has no credentials to refuse' },
}));

const image = () =>
  newImage({
    name: 'debian',
    architecture: 'x86_64',
    access: 'public',
    tags: ['lts'],
    os: { distro: 'debian' },
    properties: { purpose: 'x' },
  });
const markersOf = (id: string, content: ContentSource): Markers => ({
  agent: 'a',
  target: 't',
  imageId: id,
  sha256: content.checksums.sha256,
  revision: 1,
});
const failure = async (promise: Promise<unknown>) =>
  promise.then(
    () => expect.unreachable('expected a failure'),
    (error: unknown) =>
      isVisorError(error)
        ? { kind: error.kind, message: error.message }
        : { kind: 'not a VisorError', message: String(error) },
  );

/** One small image, created the way the agent creates them. */
async function createOne(driver: MemoryDriver) {
  const content = bufferContent(randomImageBytes(1024));
  const generic = image();
  return driver.create({ image: generic, markers: markersOf(generic.id, content), content, timeoutMs: 10_000 });
}

describe('memory driver: create under its one deadline', () => {
  it('times out an image that never turns active, deletes it, and says so', async () => {
    const slow = new MemoryCloud({ activationMs: 60_000 });
    const driver = new MemoryDriver({ cloud: slow, project: 'p' });
    const content = bufferContent(randomImageBytes(1024));
    const generic = image();
    const error = await failure(
      driver.create({ image: generic, markers: markersOf(generic.id, content), content, timeoutMs: 100 }),
    );
    expect(error.kind).toBe('timeout');
    expect(error.message).toMatch(
      /^memory: image "debian" was not active within 0\.1 s \(while waiting until active\); image mem-\S+ was deleted$/,
    );
    expect(await driver.list()).toEqual([]);
  });

  it("reports a caller's abort as unavailable, and cleans up", async () => {
    const driver = new MemoryDriver({ cloud: new MemoryCloud(), project: 'p' });
    const content = bufferContent(randomImageBytes(1024));
    const stalled: ContentSource = { ...content, open: async () => new Readable({ read() {} }) };
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const generic = image();
    const error = await failure(
      driver.create({
        image: generic,
        markers: markersOf(generic.id, content),
        content: stalled,
        timeoutMs: 60_000,
        signal: controller.signal,
      }),
    );
    expect(error.kind).toBe('unavailable');
    expect(error.message).toMatch(/was aborted \(while uploading\); image mem-\S+ was deleted$/);
    expect(await driver.list()).toEqual([]);
  });

  it('discards what retire cannot remove when the policy allows no delete', async () => {
    const driver = new MemoryDriver({ cloud: new MemoryCloud(), project: 'p', retireModes: ['hide'] });
    const made = await createOne(driver);
    expect((await failure(driver.retire(made.nativeId, 'delete'))).kind).toBe('unsupported');
    await driver.discard(made.nativeId);
    expect(await driver.list()).toEqual([]);
  });

  it('never deletes an image in use, by retire or by discard', async () => {
    const shared = new MemoryCloud();
    const driver = new MemoryDriver({ cloud: shared, project: 'p' });
    const made = await createOne(driver);
    shared.use(made.nativeId, 1);
    expect((await driver.get(made.nativeId)).inUse).toBe(true);
    expect((await failure(driver.retire(made.nativeId, 'delete'))).kind).toBe('conflict');
    expect((await failure(driver.discard(made.nativeId))).kind).toBe('conflict');
    shared.use(made.nativeId, -1);
    await driver.discard(made.nativeId);
  });
});

describe('memory mapper and schema', () => {
  it('round-trips generic metadata and markers, and keeps marker-like properties out', async () => {
    const generic = { ...image(), minRam: 512, properties: { purpose: 'x', visor_agent: 'forged' } };
    const markers: Markers = { agent: 'a', target: 't', imageId: generic.id, sha256: 'b'.repeat(64), revision: 3 };
    const fields = toNativeFields(generic, markers);
    expect(fields.properties).toMatchObject({ purpose: 'x', visor_agent: 'a', visor_target: 't', visor_revision: '3' });
    const native = await new MemoryCloud().create('p', { ...fields, disk_format: 'raw', container_format: 'bare' });
    const seen = toCloudImage(parseNativeImage(native, 'test'));
    expect(seen).toMatchObject({
      state: 'pending',
      access: 'public',
      markers,
      metadata: { architecture: 'x86_64', minRam: 512, tags: ['lts'], os: { distro: 'debian' } },
    });
    expect(seen.metadata.properties).toEqual({ purpose: 'x' });
  });

  it('refuses a malformed record as invalidResponse', () => {
    expect(() => parseNativeImage({ id: 'x', status: 'exploded' }, 'reading image x')).toThrow(
      /reading image x: the cloud's answer is malformed/,
    );
  });
});
