import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError } from '../../../core/errors.js';
import type { ContentSource, Markers } from '../../../core/iaas/port.js';
import type { Image, ImageDraft } from '../../../core/image/model.js';
import { newImage } from '../../../core/image/image.js';
import { SecretRegistry } from '../../../core/logging/redact.js';
import { PluginRegistry } from '../../../core/registry/registry.js';
import { silentLogger, type Logger } from '../../../core/logging/logger.js';
import { OneClient } from '../../../adapters/opennebula/client.js';
import {
  openNebulaOptionsSchema,
  openNebulaPlugin,
  type OpenNebulaDriver,
} from '../../../adapters/opennebula/index.js';
import { bufferContent, randomImageBytes } from '../../support/content.js';
import { recordingLogger } from '../../support/recording-logger.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../../doubles/opennebula/index.js';
import { driverFor, expectValidDocuments, startContentServer, type ContentServer } from './harness.js';

/** The driver's own rules against the double: failure paths, the USED rule, capacity, credentials, timeouts. */

const MiB = 1024 * 1024;
let double: OpenNebulaDouble;
let server: ContentServer;
let driver: OpenNebulaDriver;
let staging: string;
const doubles: OpenNebulaDouble[] = [];
let n = 0;

beforeAll(async () => {
  double = await startOpenNebulaDouble({ generation: 7 });
  doubles.push(double);
  server = await startContentServer();
  driver = driverFor(double);
  staging = await mkdtemp(join(tmpdir(), 'visor-one-driver-'));
});

afterAll(async () => {
  try {
    await expectValidDocuments(doubles);
  } finally {
    await driver.close();
    for (const d of doubles) await d.close();
    await server.close();
    await rm(staging, { recursive: true, force: true });
  }
});

function imageOf(draft: Partial<ImageDraft> = {}): Image {
  return newImage({
    name: `driver-test-${++n}`,
    architecture: 'x86_64',
    diskFormat: 'raw',
    containerFormat: 'bare',
    access: 'private',
    ...draft,
  } as ImageDraft);
}
const markersOf = (image: Image, content: ContentSource): Markers => ({
  agent: 'driver-test',
  imageId: image.id,
  sha256: content.checksums.sha256,
  revision: image.revision,
});

async function failure(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isVisorError(error), `expected a VisorError, got ${String(error)}`).toBe(true);
  return { kind: (error as { kind: string }).kind, message: (error as Error).message };
}

const namesInCloud = () => double.images().map((i) => i.name);
const callsTo = (method: string) => double.calls.filter((c) => c.method === method).length;

describe('OpenNebula driver: images that fail in the cloud are removed and reported', () => {
  it("deletes an image that ends in ERROR and reports oned's TEMPLATE/ERROR", async () => {
    const content = server.content(randomImageBytes(64 * 1024));
    double.failImports((path) => (path === content.url ? 'Error downloading: connection reset by peer' : undefined));
    const image = imageOf();
    try {
      const error = await failure(
        driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 }),
      );
      expect(error.kind).toBe('unavailable');
      expect(error.message).toMatch(
        /failed to import: .* : Error copying image in the datastore: Error downloading: connection reset by peer/,
      );
    } finally {
      double.failImports(undefined);
    }
    expect(namesInCloud()).not.toContain(image.name);
  });

  it(
    'deletes an image whose bits do not match the MD5 it ' + 'was registered with (oned checks MD5 while copying)',
    async () => {
      const content = server.content(randomImageBytes(64 * 1024), { lie: true });
      const image = imageOf();
      const error = await failure(
        driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 }),
      );
      expect(error.message).toMatch(/Invalid MD5 checksum/);
      expect(namesInCloud()).not.toContain(image.name);
    },
  );

  it("refuses content whose size lies: oned's SIZE (whole MiB) is checked, and the image removed", async () => {
    const served = randomImageBytes(100);
    const content: ContentSource = { ...server.content(served), size: 3 * MiB };
    const image = imageOf();
    const error = await failure(
      driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 }),
    );
    expect(error.kind).toBe('integrity');
    expect(error.message).toMatch(/holds 1 MB, the content is 3 MB/);
    expect(namesInCloud()).not.toContain(image.name);
  });

  it('gets nothing created when oned cannot even stat the URL', async () => {
    const content = server.content(randomImageBytes(1000), { status: 500 });
    const image = imageOf();
    const before = double.images().length;
    const error = await failure(
      driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 }),
    );
    expect(error).toMatchObject({ kind: 'unavailable' });
    expect(error.message).toMatch(
      new RegExp(
        String.raw`one\.image\.allocate failed: \[one\.image\.allocate\] Cannot ` +
          String.raw`parse image SIZE: Error downloading .* HTTP 500 \(code 8192\)`,
      ),
    );
    expect(double.images().length).toBe(before);
  });

  it('gives up at the deadline, removing the image still LOCKED', async () => {
    double.holdImports(true);
    const content = server.content(randomImageBytes(1000));
    const image = imageOf();
    try {
      const error = await failure(
        driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 300 }),
      );
      expect(error.kind).toBe('timeout');
    } finally {
      double.holdImports(false);
    }
    expect(namesInCloud()).not.toContain(image.name);
  });

  it('cleans up when the caller aborts while waiting', async () => {
    double.holdImports(true);
    const content = server.content(randomImageBytes(1000));
    const image = imageOf();
    try {
      const error = await failure(
        driver.create({
          image,
          markers: markersOf(image, content),
          content,
          signal: AbortSignal.timeout(200),
          timeoutMs: 15_000,
        }),
      );
      expect(error.kind).toBe('unavailable');
    } finally {
      double.holdImports(false);
    }
    expect(namesInCloud()).not.toContain(image.name);
  });
});

describe('OpenNebula driver: refusals before anything reaches oned', () => {
  it("refuses an image too big for the datastore's free space, before allocate", async () => {
    double.setFreeMb(1, 1);
    const content = server.content(randomImageBytes(MiB + 1));
    const image = imageOf();
    const allocations = callsTo('one.image.allocate');
    try {
      const error = await failure(
        driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 }),
      );
      expect(error.kind).toBe('unavailable');
      expect(error.message).toMatch(/datastore default has 1 MB free, image .* needs 2 MB/);
    } finally {
      double.setFreeMb(1, 7164);
    }
    expect(callsTo('one.image.allocate')).toBe(allocations);
    expect(callsTo('one.datastorepool.info')).toBeGreaterThan(0);
  });

  it('refuses names, tags and values oned cannot hold, and content without a URL in remote mode', async () => {
    const content = server.content(randomImageBytes(1000));
    const allocations = callsTo('one.image.allocate');
    const bad = imageOf({ name: 'debian:12' });
    expect(
      await failure(driver.create({ image: bad, markers: markersOf(bad, content), content, timeoutMs: 15_000 })),
    ).toMatchObject({ kind: 'invalidInput' });
    const tagged = imageOf({ tags: ['a,b'] });
    expect(
      await failure(driver.create({ image: tagged, markers: markersOf(tagged, content), content, timeoutMs: 15_000 })),
    ).toMatchObject({ kind: 'invalidInput' });
    const noUrl = bufferContent(randomImageBytes(1000));
    const plain = imageOf();
    const error = await failure(
      driver.create({ image: plain, markers: markersOf(plain, noUrl), content: noUrl, timeoutMs: 15_000 }),
    );
    expect(error).toMatchObject({ kind: 'invalidInput' });
    expect(error.message).toMatch(/remote.*URL/);
    expect(callsTo('one.image.allocate')).toBe(allocations);
  });

  it('refuses kernels without a file datastore, and registers them in one when configured', async () => {
    const content = bufferContent(randomImageBytes(1000), 'aki', { url: server.serve(randomImageBytes(1000)) });
    const kernel = imageOf({ type: 'kernel', diskFormat: 'aki' });
    expect(
      await failure(driver.create({ image: kernel, markers: markersOf(kernel, content), content, timeoutMs: 15_000 })),
    ).toMatchObject({ kind: 'unsupported' });
    const withFiles = driverFor(double, { filesDatastore: 'files' });
    try {
      const honest = server.content(randomImageBytes(1000));
      const akiContent = { ...honest, diskFormat: 'aki' as const };
      const created = await withFiles.create({
        image: kernel,
        markers: markersOf(kernel, akiContent),
        content: akiContent,
        timeoutMs: 15_000,
      });
      expect(created).toMatchObject({ state: 'active', diskFormat: 'aki', metadata: { type: 'kernel' } });
      expect(double.image(Number(created.nativeId))).toMatchObject({ type: 3, datastoreId: 2 });
    } finally {
      await withFiles.close();
    }
  });

  it('names a missing or wrong datastore as a configuration error', async () => {
    const content = server.content(randomImageBytes(1000));
    const image = imageOf();
    for (const datastore of ['nowhere', 'system', 99]) {
      const d = driverFor(double, { datastore });
      try {
        expect(
          await failure(d.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 })),
        ).toMatchObject({ kind: 'config' });
      } finally {
        await d.close();
      }
    }
  });
});

describe('OpenNebula driver: images in use', () => {
  it('refuses to delete an image VMs use, disables what oned lets it, and deletes once the VMs are gone', async () => {
    const content = server.content(randomImageBytes(1000));
    const image = imageOf();
    const created = await driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 });
    const id = Number(created.nativeId);
    double.attachVm(id, 31);
    expect(await driver.get(created.nativeId)).toMatchObject({ state: 'active', inUse: true });

    const refused = await failure(driver.retire(created.nativeId, 'delete'));
    expect(refused.kind).toBe('conflict');
    expect(double.image(id)).toBeDefined();

    // cloudkeeper-one's expiry on a USED image: oned refuses to disable it, so it is renamed, chmod-ed and stamped.
    await driver.retire(created.nativeId, 'disable');
    const expired = double.image(id)!;
    expect(expired.name).toMatch(new RegExp(`^EXPIRED_\\d{8}T\\d{6}Z_${image.name}$`));
    expect(expired.permissions).toEqual([1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect(expired.template.get('VISOR_EXPIRED')).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(expired.state).toBe(2);
    expect(await driver.get(created.nativeId)).toMatchObject({
      hidden: true,
      inUse: true,
      state: 'active',
      metadata: { name: image.name },
    });

    double.detachVm(id, 31);
    await driver.retire(created.nativeId, 'disable');
    expect(double.image(id)).toMatchObject({ state: 3, name: expired.name });

    await driver.retire(created.nativeId, 'delete');
    expect(double.image(id)).toBeUndefined();
  });

  it("reports oned's own refusal (ACTION, 2048) as a conflict too", async () => {
    const content = server.content(randomImageBytes(1000));
    const image = imageOf();
    const created = await driver.create({ image, markers: markersOf(image, content), content, timeoutMs: 15_000 });
    double.attachVm(Number(created.nativeId), 32);
    // What a driver that read the image just before the VM started would meet: oned's own check.
    const error = await failure(oneDelete(Number(created.nativeId)));
    expect(error).toMatchObject({ kind: 'conflict' });
    expect(error.message).toMatch(/Cannot delete image\. There are 1 VMs using it\. \(code 2048\)/);
    double.detachVm(Number(created.nativeId), 32);
    await driver.retire(created.nativeId, 'delete');
  });
});

async function oneDelete(id: number): Promise<void> {
  const client = new OneClient({
    endpoint: double.endpoint,
    username: 'oneadmin',
    password: 'opennebula',
    timeoutMs: 5000,
    maxResponseBytes: MiB,
  });
  try {
    await client.deleteImage(id);
  } finally {
    client.close();
  }
}

describe('OpenNebula driver: credentials, permissions and time limits', () => {
  it('reports a refused session as auth (256), without the password in the message', async () => {
    const bad = driverFor(double, { password: 'wrong-password-123' });
    try {
      const error = await failure(bad.list());
      expect(error.kind).toBe('auth');
      expect(error.message).toMatch(/User couldn't be authenticated, aborting call\. \(code 256\)/);
      expect(error.message).not.toMatch(/wrong-password-123/);
    } finally {
      await bad.close();
    }
  });

  it('reports an image another user keeps private as forbidden (512)', async () => {
    const theirs = double.addImage({ name: `private-${++n}`, uid: 0 });
    const user = driverFor(double, { username: 'user' });
    try {
      const error = await failure(user.get(String(theirs.id)));
      expect(error.kind).toBe('forbidden');
      expect(error.message).toMatch(/Not authorized to perform USE IMAGE \[\d+\]\. \(code 512\)/);
      expect((await user.list()).some((i) => i.nativeId === String(theirs.id))).toBe(false);
    } finally {
      await user.close();
    }
  });

  it('gives up on a call oned does not answer in time', async () => {
    const slow = driverFor(double, { requestTimeoutMs: 200 });
    double.stall('one.imagepool.info', 1_500);
    try {
      const started = Date.now();
      expect(await failure(slow.list())).toMatchObject({ kind: 'timeout' });
      expect(Date.now() - started).toBeLessThan(1_400);
    } finally {
      double.stall('one.imagepool.info', 0);
      await slow.close();
    }
  });

  it('reports an unreachable oned as unavailable, and a wrong endpoint path as a configuration error', async () => {
    const closed = driverFor(double, { endpoint: 'http://127.0.0.1:1/RPC2' });
    const wrongPath = driverFor(double, { endpoint: double.endpoint.replace('/RPC2', '/RPC3') });
    try {
      expect(await failure(closed.list())).toMatchObject({ kind: 'unavailable' });
      expect(await failure(wrongPath.list())).toMatchObject({ kind: 'config' });
    } finally {
      await closed.close();
      await wrongPath.close();
    }
  });
});

describe('OpenNebula driver: updates, listing, local mode', () => {
  it(
    'updates metadata in place: rename, ' + 'merged attributes with removed properties blanked, access by chmod',
    async () => {
      const content = server.content(randomImageBytes(1000));
      const image = imageOf({ properties: { keep: 'yes', drop: 'me' }, tags: ['one'] });
      const markers = markersOf(image, content);
      const created = await driver.create({ image, markers, content, timeoutMs: 15_000 });
      const next: Image = {
        ...image,
        name: `${image.name}-v2`,
        access: 'public',
        properties: { keep: 'still' },
        tags: [],
        revision: 2,
      };
      const updated = await driver.updateMetadata(created.nativeId, next, { ...markers, revision: 2 });
      expect(updated).toMatchObject({
        name: next.name,
        access: 'public',
        markers: { revision: 2 },
        metadata: { properties: { keep: 'still' }, tags: [] },
      });
      expect(double.image(Number(created.nativeId))?.template.get('DROP')).toBe('');
      expect(double.calls.filter((c) => c.method === 'one.image.update').at(-1)?.params[2]).toBe(1);
      // A retired image keeps its EXPIRED_ prefix when its metadata changes.
      await driver.retire(created.nativeId, 'disable');
      const again = await driver.updateMetadata(
        created.nativeId,
        { ...next, name: `${image.name}-v3`, revision: 3 },
        { ...markers, revision: 3 },
      );
      expect(again.name).toMatch(new RegExp(`^EXPIRED_\\d{8}T\\d{6}Z_${image.name}-v3$`));
      expect(again.hidden).toBe(true);
    },
  );

  it("lists in pages with oned's offset paging (start = offset, end = -page size)", async () => {
    const paged = driverFor(double, { pageSize: 2, ownership: 'all' });
    try {
      const all = await paged.list();
      expect(all.map((i) => i.nativeId).sort()).toEqual(
        double
          .images()
          .map((i) => String(i.id))
          .sort(),
      );
      const pages = double.calls.filter((c) => c.method === 'one.imagepool.info' && c.params[2] === -2);
      // Offsets 0, 2, 4, ... until a short page; oned holds more than one page's worth by now.
      expect(all.length).toBeGreaterThan(2);
      expect(pages.map((c) => c.params[1])).toEqual(
        Array.from({ length: Math.floor(all.length / 2) + 1 }, (_, i) => i * 2),
      );
      expect(pages.every((c) => c.params[0] === -2)).toBe(true);
    } finally {
      await paged.close();
    }
  });

  it(
    'stages and verifies content in local mode: a lie is refused ' +
      'before oned sees it, and nothing is left in the staging folder',
    async () => {
      const local = await startOpenNebulaDouble({
        generation: 5,
        datastores: [
          { id: 1, name: 'default', type: 0, template: { SAFE_DIRS: staging, RESTRICTED_DIRS: '/', TYPE: 'IMAGE_DS' } },
        ],
      });
      doubles.push(local);
      const d = driverFor(local, { mode: 'local', stagingDir: staging, datastore: 'default' });
      try {
        const liar = bufferContent(randomImageBytes(5000), 'raw', { lie: true });
        const image = imageOf();
        expect(
          await failure(d.create({ image, markers: markersOf(image, liar), content: liar, timeoutMs: 15_000 })),
        ).toMatchObject({ kind: 'integrity' });
        expect(local.calls.some((c) => c.method === 'one.image.allocate')).toBe(false);

        const bytes = randomImageBytes(3 * MiB + 5);
        const honest = bufferContent(bytes);
        const created = await d.create({
          image,
          markers: markersOf(image, honest),
          content: honest,
          timeoutMs: 15_000,
        });
        expect(await readdir(staging)).toEqual([]);
        const { stream, size } = await d.download(created.nativeId, { range: { start: 1000, end: 1999 } });
        expect(size).toBe(1000);
        expect((await buffer(stream)).equals(bytes.subarray(1000, 2000))).toBe(true);
        const whole = await buffer((await d.download(created.nativeId)).stream);
        expect(createHash('sha256').update(whole).digest('hex')).toBe(honest.checksums.sha256);
        expect(local.image(Number(created.nativeId))?.sizeMb).toBe(4);
      } finally {
        await d.close();
      }
    },
  );

  it("refuses download in remote mode, where the datastore is not the agent's to read", async () => {
    expect(await failure(driver.download('0'))).toMatchObject({ kind: 'unsupported' });
  });

  it('can be closed twice and refuses work afterwards', async () => {
    const d = driverFor(double);
    await d.close();
    await d.close();
    expect(await failure(d.list())).toMatchObject({ kind: 'internal' });
  });
});

describe('OpenNebula plugin', () => {
  it('validates its options, fills the defaults and registers the credentials as secrets', async () => {
    const parsed = openNebulaOptionsSchema.parse({
      endpoint: double.endpoint,
      username: 'oneadmin',
      password: 'opennebula',
      datastore: 'default',
    });
    expect(parsed).toMatchObject({
      mode: 'remote',
      imageType: 'OS',
      persistent: false,
      ownership: 'mine',
      pageSize: 0,
      retire: { expiredPrefix: 'EXPIRED_', chmod: '600' },
    });
    expect(openNebulaOptionsSchema.safeParse({ ...parsed, mode: 'local' }).success).toBe(false);
    expect(openNebulaOptionsSchema.safeParse({ ...parsed, retire: { chmod: '6000' } }).success).toBe(false);
    expect(openNebulaOptionsSchema.safeParse({ ...parsed, endpoint: 'ftp://one/RPC2' }).success).toBe(false);
    expect(openNebulaOptionsSchema.safeParse({ ...parsed, extra: 1 }).success).toBe(false);
    expect(openNebulaPlugin).toMatchObject({ id: 'opennebula', kind: 'iaas' });
    const secrets = new SecretRegistry();
    const created = await createThroughFactory(parsed, secrets);
    try {
      expect(created.adapter).toBe('opennebula');
      expect(created.capabilities).toMatchObject({
        requiresUrl: true,
        importFromUrl: true,
        download: false,
        detectsInUse: true,
        retireModes: ['disable', 'delete'],
      });
      expect(secrets.maskText('session oneadmin:opennebula, password opennebula')).not.toMatch(/opennebula/);
      expect((await created.list()).length).toBeGreaterThan(0);
    } finally {
      await created.close();
    }
  });

  it('still loads the old create deadline (timeouts.readyWait), does nothing with it, and says so', async () => {
    const options = { endpoint: double.endpoint, username: 'oneadmin', password: 'opennebula', datastore: 'default' };
    const logger = recordingLogger();
    const old = { ...options, timeouts: { request: 5, readyWait: 20 } };
    const created = await createThroughFactory(old, new SecretRegistry(), logger);
    await created.close();
    const said = /timeouts\.readyWait is ignored: the deadline of a create is sync\.timeouts\.action/;
    expect(logger.lines).toEqual([expect.objectContaining({ level: 'warn', message: expect.stringMatching(said) })]);
  });
});

/** Creates a driver the way visor does: registered, options validated by the plugin's schema, built by its factory. */
async function createThroughFactory(
  options: unknown,
  secrets: SecretRegistry,
  logger: Logger = silentLogger,
): Promise<OpenNebulaDriver> {
  const registry = new PluginRegistry();
  registry.register(openNebulaPlugin);
  const validated = await registry.validateOptions('iaas', 'opennebula', options, ['clouds', 'one', 'options']);
  expect(validated.issues).toEqual([]);
  return (await registry
    .factory('iaas', 'opennebula')
    .create(validated.value, { name: 'one-test', dataDir: staging, logger, secrets })) as OpenNebulaDriver;
}
