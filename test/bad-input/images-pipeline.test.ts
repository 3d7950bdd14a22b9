import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { openSession, type SyncSession } from '../../agent/session.js';
import { prepareContent } from '../../agent/sync/content.js';
import { isVisorError, type ErrorKind } from '../../core/errors.js';
import type { DriverCapabilities } from '../../core/iaas/port.js';
import type { DiskFormat, Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';
import { requirePeer } from '../peers/index.js';
import {
  addImage,
  corruptStored,
  keptState,
  makeBadImages,
  plantImage,
  storedPath,
  type BadImageFiles,
} from '../support/bad-images.js';

/**
 * Bad images through the agent's content pipeline (agent/sync/content.ts `prepareContent`, the
 * step before any upload or conversion): each is refused with its kind and a reason naming the
 * problem, and the agent keeps nothing of it — no converted artifact, no cache entry, no object.
 */
const capabilities = (diskFormats: readonly DiskFormat[]): DriverCapabilities => ({
  diskFormats,
  containerFormats: ['bare'],
  retireModes: ['delete'],
  access: ['public', 'private'],
  reportsChecksums: [],
  reportsSize: false,
  importFromUrl: false,
  requiresUrl: false,
  properties: true,
  tags: true,
  download: false,
  detectsInUse: false,
});
const anyFormat = capabilities(['raw', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'iso', 'ploop']);
const rawOnly = capabilities(['raw']);

describe('bad images are refused by the content pipeline, leaving nothing behind', () => {
  let skip: string | undefined;
  let dir: string;
  let session: SyncSession;
  let files: BadImageFiles;

  beforeAll(async () => {
    skip = (await requirePeer('qemu-img')).skip;
    if (skip) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-bad-images-'));
    files = await makeBadImages(dir);
    const config = join(dir, 'visor.yaml');
    await writeFile(config, `dataDir: ${join(dir, 'data')}\nlogging: { level: error }\n`);
    session = await openSession({ configFile: config, env: {}, logger: silentLogger });
  }, 600_000);
  afterAll(async () => {
    await session?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const kept = () => keptState(session.deps.catalog, join(dir, 'data', 'images'), session.deps.cacheDir);
  const prepare = (image: Image, caps: DriverCapabilities, diskFormat?: DiskFormat) =>
    prepareContent(
      image,
      { image, diskFormat, convertFrom: undefined },
      {
        catalog: session.deps.catalog,
        stores: session.deps.stores,
        defaultStore: session.deps.defaultStore,
        cacheDir: session.deps.cacheDir,
        capabilities: caps,
      },
    );

  /** The refusal `prepare` must end in, and nothing kept by it. */
  async function refused(
    image: Image,
    caps: DriverCapabilities,
    kind: ErrorKind,
    reason: RegExp,
    diskFormat?: DiskFormat,
  ): Promise<void> {
    const before = await kept();
    const error = await prepare(image, caps, diskFormat).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVisorError(error), `${image.name} was accepted`).toBe(true);
    expect(error).toMatchObject({ kind, message: expect.stringMatching(reason) });
    expect((error as Error).message.split('\n')).toHaveLength(1);
    expect(await kept()).toEqual(before);
  }

  const need = (ctx: TestContext) => {
    if (skip) ctx.skip(skip);
  };

  it('accepts the good images it is given (the baseline the refusals are measured against)', async (ctx) => {
    need(ctx);
    const raw = await addImage(session.images, 'good-raw', files.raw, { diskFormat: 'raw' });
    const qcow2 = await addImage(session.images, 'good-qcow2', files.qcow2, { diskFormat: 'qcow2' });
    expect((await prepare(raw, anyFormat)).inspection.format).toBe('raw');
    expect((await prepare(qcow2, anyFormat)).inspection.format).toBe('qcow2');
  });

  it.for([
    ['a qcow2 with a backing file (/etc/passwd)', 'backing', 'qcow2', 'unsafe', /backing file: "\/etc\/passwd"/],
    ['a qcow2 with an external data file', 'dataFile', 'qcow2', 'unsafe', /external data file: ".*external\.raw"/],
    ['a VMDK descriptor naming a host file', 'vmdkDescriptor', 'vmdk', 'unsafe', /\/etc\/passwd/],
    [
      'a truncated qcow2',
      'truncatedQcow2',
      'qcow2',
      'invalidInput',
      /beyond the end|truncated|cut short|past the end/i,
    ],
    ['a truncated VHD', 'truncatedVhd', 'vhd', 'invalidInput', /footer|truncated|cut short|past the end/i],
    ['a qcow2 declared raw', 'qcow2', 'raw', 'unsafe', /qcow2/],
    ['raw bytes declared qcow2', 'raw', 'qcow2', 'unsafe', /declared qcow2|raw/],
    ['a VMDK descriptor declared raw', 'vmdkDescriptor', 'raw', 'unsafe', /vmdk|\/etc\/passwd/i],
  ] as [string, keyof BadImageFiles, DiskFormat, ErrorKind, RegExp][])(
    'refuses %s',
    async ([name, file, declared, kind, reason], ctx) => {
      need(ctx);
      // Planted past the upload's own inspection (which refuses them all): the agent checks again.
      const image = await plantImage(session.deps, name.replace(/\W+/g, '-'), files[file], { diskFormat: declared });
      await refused(image, anyFormat, kind, reason);
      // Also when the cloud needs a conversion: the inspection comes before qemu-img ever runs.
      await refused(image, rawOnly, kind, reason);
    },
  );

  it('refuses a checksum lie before converting: the bytes are not those the catalog vouches for', async (ctx) => {
    need(ctx);
    // A conversion computes fresh checksums for what it writes; converting corrupt bytes would
    // launder them into an artifact that every later check agrees with. So the source is
    // verified first.
    const image = await addImage(session.images, 'rotten-qcow2', files.qcow2, { diskFormat: 'qcow2' });
    await corruptStored(image);
    await refused(image, rawOnly, 'integrity', /sha256 is [0-9a-f]{64}, expected [0-9a-f]{64}/);
  });

  it('refuses a checksum lie that changes the size, before converting', async (ctx) => {
    need(ctx);
    const image = await addImage(session.images, 'grown-qcow2', files.qcow2, { diskFormat: 'qcow2' });
    await appendFile(storedPath(image), Buffer.alloc(4096, 1));
    await refused(image, rawOnly, 'integrity', /size is \d+ bytes, expected \d+/);
  });

  it('hands a direct push the catalog checksums, so the driver verifies the stream against them', async (ctx) => {
    need(ctx);
    // Without conversion the bytes are streamed as they are; each driver checks them while
    // sending (Glance: sha256 in-stream + md5/sha512 as stored; OpenNebula: MD5 in the
    // datastore copy) — see images-glance and images-opennebula for those clouds refusing it.
    const image = await addImage(session.images, 'rotten-raw', files.raw, { diskFormat: 'raw' });
    await corruptStored(image);
    const prepared = await prepare(image, anyFormat);
    expect(prepared.source.checksums).toEqual(image.checksums);
    expect(prepared.source.size).toBe(image.size);
  });
});
