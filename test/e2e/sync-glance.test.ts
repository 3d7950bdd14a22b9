import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../../agent/service/access.js';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, glanceApi, imagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { plantImage } from '../support/bad-images.js';
import { writeConfig } from './glance-config.js';

/**
 * End to end against real Keystone + Glance: the agent's sync of a catalog into Glance, run
 * after run — creation, idempotence, metadata update, replacement, retirement, unmarked images
 * left alone, and unsafe images that never reach the cloud.
 */
const run = randomBytes(3).toString('hex');
const prefix = `e2e-${run}-`;
const tag = `e2e-${run}`;
const agent: Caller = { name: 'e2e', admin: true };

describe('sync into real Glance, end to end', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let session: SyncSession;
  const files: Record<string, string> = {};

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    skip ??= (await requirePeer('qemu-img')).skip;
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-e2e-glance-'));
    files['raw'] = join(dir, 'disk.raw');
    await writeFile(files['raw'], randomBytes(2 * 1024 * 1024 + 512));
    files['qcow2'] = join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', files['raw'], files['qcow2']]);
    files['raw2'] = join(dir, 'disk2.raw');
    await writeFile(files['raw2'], randomBytes(1024 * 1024));
    files['backing'] = join(dir, 'backing.qcow2');
    execFileSync('qemu-img', ['create', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', files['backing'], '1M']);
    files['datafile'] = join(dir, 'datafile.qcow2');
    execFileSync('qemu-img', [
      'create',
      '-f',
      'qcow2',
      '-o',
      `data_file=${join(dir, 'external.raw')}`,
      files['datafile'],
      '1M',
    ]);
    files['vmdk'] = join(dir, 'descriptor.vmdk');
    await writeFile(
      files['vmdk'],
      '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW ' +
        '2048 FLAT "/etc/passwd" 0\n\nddb.virtualHWVersion = "4"\n',
    );
    session = await openSession({
      configFile: await writeConfig(dir, peer, { run, prefix, tag }),
      env: {},
      logger: silentLogger,
    });
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    await session?.close();
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  const add = async (name: string, file: string, extra: Record<string, unknown> = {}): Promise<Image> => {
    const image = await session.images.register(agent, {
      name,
      architecture: 'x86_64',
      tags: [tag],
      access: 'public',
      ...extra,
    });
    return session.images.upload(agent, image.id, createReadStream(file), { size: (await stat(file)).size });
  };
  const sync = () => syncTarget(session.built.targets.get('glance')!, session.deps, { trigger: 'cli' });
  const glanceImage = async (id: string) =>
    (await (await glanceApi(peer!, 'admin')).get(`/v2/images/${id}`)).data as Record<string, unknown>;
  const bytes = (r: Awaited<ReturnType<typeof sync>>) =>
    r.actions.reduce((n, a) => n + (a.result !== 'failed' ? (a.bytes ?? 0) : 0), 0);

  let rawImage: Image;
  let qcowImage: Image;
  let unmarkedId: string;
  let unmarkedBefore: Record<string, unknown>;
  const nativeOf = new Map<string, string>();

  it('creates raw and qcow2 images, verified and marked; leaves unmarked images alone', async (ctx) => {
    if (skip) ctx.skip(skip);
    rawImage = await add('raw-disk', files['raw']!, { diskFormat: 'raw', properties: { purpose: 'e2e' } });
    qcowImage = await add('qcow2-disk', files['qcow2']!, { diskFormat: 'qcow2' });
    await add('not-selected', files['raw2']!, { diskFormat: 'raw', tags: [] });
    // An image someone uploaded by hand, named like ours: never to be touched.
    const api = await glanceApi(peer!, 'admin');
    const created = await api.post('/v2/images', {
      name: `${prefix}raw-disk`,
      disk_format: 'raw',
      container_format: 'bare',
      visibility: 'public',
    });
    unmarkedId = created.data.id as string;
    await api.put(`/v2/images/${unmarkedId}/file`, randomBytes(4096), {
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    unmarkedBefore = await glanceImage(unmarkedId);

    const first = await sync();
    expect(first.status).toBe('succeeded');
    expect(first.actions.map((a) => `${a.action}:${a.result}`).sort()).toEqual(['create:created', 'create:created']);
    expect(first.drift).toBe(0);
    expect(bytes(first)).toBe(rawImage.size! + qcowImage.size!);
    for (const record of first.actions) nativeOf.set(record.imageId!, record.nativeId!);
    for (const image of [rawImage, qcowImage]) {
      const native = await glanceImage(nativeOf.get(image.id)!);
      expect(native).toMatchObject({
        status: 'active',
        name: `${prefix}${image.name}`,
        disk_format: image.diskFormat,
        size: image.size,
        checksum: image.checksums.md5,
        os_hash_value: image.checksums.sha512,
        visor_agent: `e2e-agent-${run}`,
        visor_image_id: image.id,
        visor_sha256: image.checksums.sha256,
        visor_revision: String(image.revision),
      });
    }
    expect((await glanceImage(nativeOf.get(rawImage.id)!))['purpose']).toBe('e2e');
  });

  it('moves 0 bytes on the second run', async (ctx) => {
    if (skip) ctx.skip(skip);
    const second = await sync();
    expect(second.status).toBe('succeeded');
    expect(second.actions).toEqual([]);
    expect(bytes(second)).toBe(0);
  });

  it('updates metadata without re-uploading', async (ctx) => {
    if (skip) ctx.skip(skip);
    rawImage = await session.images.update(agent, rawImage.id, {
      name: 'raw-disk-renamed',
      properties: { purpose: 'renamed' },
    });
    const third = await sync();
    expect(third.actions).toEqual([
      expect.objectContaining({ action: 'update', result: 'updated', nativeId: nativeOf.get(rawImage.id) }),
    ]);
    expect(bytes(third)).toBe(0);
    const native = await glanceImage(nativeOf.get(rawImage.id)!);
    expect(native).toMatchObject({
      name: `${prefix}raw-disk-renamed`,
      purpose: 'renamed',
      visor_revision: String(rawImage.revision),
      checksum: rawImage.checksums.md5,
    });
    expect((await sync()).actions).toEqual([]);
  });

  it('replaces on a content change: new copy first, the old one retired (hidden) after', async (ctx) => {
    if (skip) ctx.skip(skip);
    const oldNative = nativeOf.get(qcowImage.id)!;
    const newContent = join(dir, 'disk3.qcow2');
    await writeFile(join(dir, 'disk3.raw'), randomBytes(3 * 1024 * 1024));
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'disk3.raw'), newContent]);
    qcowImage = await session.images.upload(agent, qcowImage.id, createReadStream(newContent), {
      size: (await stat(newContent)).size,
    });
    const fourth = await sync();
    expect(fourth.status).toBe('succeeded');
    expect(fourth.actions.map((a) => `${a.action}:${a.result}`)).toEqual(['replace:replaced', 'retire:retired']);
    const newNative = fourth.actions[0]!.nativeId!;
    expect(newNative).not.toBe(oldNative);
    expect(await glanceImage(newNative)).toMatchObject({
      status: 'active',
      checksum: qcowImage.checksums.md5,
      visor_sha256: qcowImage.checksums.sha256,
    });
    expect(await glanceImage(oldNative)).toMatchObject({ os_hidden: true, status: 'active' });
    nativeOf.set(qcowImage.id, newNative);
    expect((await sync()).actions).toEqual([]);
  });

  it('retires per policy an image removed from the selector', async (ctx) => {
    if (skip) ctx.skip(skip);
    rawImage = await session.images.update(agent, rawImage.id, { tags: [] });
    const fifth = await sync();
    expect(fifth.actions).toEqual([
      expect.objectContaining({
        action: 'retire',
        result: 'retired',
        nativeId: nativeOf.get(rawImage.id),
        detail: expect.stringMatching(/no longer selected.*hide/),
      }),
    ]);
    expect(await glanceImage(nativeOf.get(rawImage.id)!)).toMatchObject({ os_hidden: true });
    expect((await sync()).actions).toEqual([]);
  });

  it('never touched the unmarked image', async (ctx) => {
    if (skip) ctx.skip(skip);
    expect(await glanceImage(unmarkedId)).toEqual(unmarkedBefore);
  });

  it('refuses unsafe images with a clear reason; they never reach the cloud', async (ctx) => {
    if (skip) ctx.skip(skip);
    // Uploads refuse all four (test/api/upload-inspection.test.ts); planted in the catalog past
    // that check, as an older visor or another writer of a shared catalog could, the agent
    // refuses them again before they reach a cloud.
    const plant = (name: string, file: string, extra: Record<string, unknown>) =>
      plantImage(session.deps, name, file, { tags: [tag], ...extra });
    const bad = [
      await plant('backing-file', files['backing']!, { diskFormat: 'qcow2' }),
      await plant('data-file', files['datafile']!, { diskFormat: 'qcow2' }),
      await plant('vmdk-descriptor', files['vmdk']!, { diskFormat: 'vmdk' }),
      await plant('qcow2-as-raw', files['qcow2']!, { diskFormat: 'raw' }),
    ];
    const result = await sync();
    expect(result.status).toBe('failed');
    const failures = new Map(result.actions.map((a) => [a.name, a]));
    expect(failures.get(`${prefix}backing-file`)?.error).toMatchObject({
      kind: 'unsafe',
      message: expect.stringMatching(/backing file.*\/etc\/passwd/),
    });
    expect(failures.get(`${prefix}data-file`)?.error).toMatchObject({
      kind: 'unsafe',
      message: expect.stringMatching(/data file/),
    });
    expect(failures.get(`${prefix}vmdk-descriptor`)?.error).toMatchObject({
      kind: 'unsafe',
      message: expect.stringMatching(/\/etc\/passwd/),
    });
    expect(failures.get(`${prefix}qcow2-as-raw`)?.error).toMatchObject({
      kind: 'unsafe',
      message: expect.stringMatching(/qcow2/),
    });
    const inGlance = (await imagesNamed(peer!, prefix)).map((i) => i.name);
    for (const image of bad) expect(inGlance).not.toContain(`${prefix}${image.name}`);
    for (const image of bad) await session.images.delete(agent, image.id);
  });
});
