import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { silentLogger } from '../../core/logging/logger.js';
import { FileStore } from '../../core/store/file/file-store.js';
import type { Caller } from './access.js';
import { completeChecksums } from './checksum-completion.js';
import { ImageService } from './image-service.js';

const hex = (algorithm: string, b: Buffer) => createHash(algorithm).update(b).digest('hex');
const admin: Caller = { name: 'suite', admin: true };

describe('digests computed off the request path', () => {
  let dir: string;
  let catalog: SqliteCatalog;
  let stores: Map<string, FileStore>;
  const services: ImageService[] = [];
  const service = (softDeleteMs?: number) => {
    const s = new ImageService({
      catalog,
      stores,
      defaultStore: 'local',
      logger: silentLogger,
      ...(softDeleteMs !== undefined ? { softDeleteMs } : {}),
    });
    services.push(s);
    return s;
  };
  const upload = async (s: ImageService, data: Buffer) => {
    const image = await s.register(admin, { name: 'img', architecture: 'x86_64', diskFormat: 'raw' });
    return s.upload(admin, image.id, Readable.from([data]), { size: data.length });
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-digests-'));
    catalog = new SqliteCatalog({ path: join(dir, 'catalog.db') });
    await catalog.init();
    stores = new Map([['local', new FileStore({ root: join(dir, 'images'), fsync: false })]]);
  });
  afterEach(async () => {
    for (const s of services.splice(0)) await s.close();
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a one-shot service (no background work) computes every digest in the upload', async () => {
    const data = randomBytes(100_000);
    const image = await upload(service(), data);
    expect(image.checksums).toEqual({
      md5: hex('md5', data),
      sha256: hex('sha256', data),
      sha512: hex('sha512', data),
    });
    expect(image.checksumsPending).toBeUndefined();
  });

  it('a server computes the sha256 in the upload, md5 and sha512 afterwards', async () => {
    const s = service();
    await s.startBackgroundWork();
    const data = randomBytes(300_000);
    const image = await upload(s, data);
    expect(image).toMatchObject({
      status: 'available',
      checksums: { sha256: hex('sha256', data) },
      checksumsPending: ['md5', 'sha512'],
    });
    await s.checksumsIdle();
    const done = await catalog.images.find(image.id);
    expect(done?.checksums).toEqual({
      md5: hex('md5', data),
      sha256: hex('sha256', data),
      sha512: hex('sha512', data),
    });
    expect(done?.checksumsPending).toBeUndefined();
    expect(done?.status).toBe('available');
  });

  it('what a stopped server left pending is computed by the next one at start', async () => {
    const first = service();
    await first.startBackgroundWork();
    await first.close(); // Stopped before any work: the uploads below stay pending.
    const data = randomBytes(50_000);
    const image = await upload(first, data);
    expect(image.checksumsPending).toEqual(['md5', 'sha512']);
    const next = service();
    await next.startBackgroundWork();
    await next.checksumsIdle();
    expect((await catalog.images.find(image.id))?.checksums.md5).toBe(hex('md5', data));
  });

  it('stored bytes that do not match the sha256 put the image in error, no digest recorded', async () => {
    const s = service();
    await s.startBackgroundWork();
    await s.close();
    const data = randomBytes(50_000);
    const image = await upload(s, data);
    await writeFile(fileURLToPath(image.location!.uri), randomBytes(50_000));
    const result = await completeChecksums(catalog.images, stores, image);
    expect(result.outcome).toBe('damaged');
    const after = await catalog.images.find(image.id);
    expect(after).toMatchObject({ status: 'error', checksums: { sha256: hex('sha256', data) } });
    expect(after?.checksums.md5).toBeUndefined();
    expect(after?.checksumsPending).toBeUndefined();
  });

  it('records nothing for an image re-uploaded, moved or deleted meanwhile; minds no metadata change', async () => {
    const s = service();
    await s.startBackgroundWork();
    await s.close();
    const first = await upload(s, randomBytes(20_000));
    const second = randomBytes(20_000);
    await s.upload(admin, first.id, Readable.from([second]), { size: second.length });
    // The first bytes are gone with the re-upload: nothing read, nothing recorded.
    await expect(completeChecksums(catalog.images, stores, first)).rejects.toMatchObject({ kind: 'notFound' });
    const now = (await catalog.images.find(first.id))!;
    // Read from where the image is now, but it moved before the digests were recorded: moot.
    const moved = { ...now, location: { ...now.location!, uri: first.location!.uri } };
    expect(moved.location.uri).not.toBe(now.location!.uri);
    await writeFile(fileURLToPath(first.location!.uri), second);
    expect((await completeChecksums(catalog.images, stores, moved)).outcome).toBe('moot');
    await rm(fileURLToPath(first.location!.uri));
    expect(now.checksums).toEqual({ sha256: hex('sha256', second) });
    // A metadata change in between does not get in the way.
    await s.update(admin, first.id, { name: 'renamed' });
    const done = await completeChecksums(catalog.images, stores, now);
    expect(done).toMatchObject({
      outcome: 'completed',
      image: { name: 'renamed', checksums: { md5: hex('md5', second) } },
    });
    // Deleted softly (the default: kept, restorable): nothing recorded on the deleted record.
    const third = await upload(s, randomBytes(1000));
    const trashed = await s.delete(admin, third.id);
    expect(await completeChecksums(catalog.images, stores, third)).toMatchObject({ outcome: 'moot' });
    expect(await catalog.images.find(third.id)).toEqual(trashed);
    // Deleted at once (lifecycle.softDelete 0): nothing to record into.
    const hard = service(0);
    await hard.startBackgroundWork();
    const fourth = await upload(hard, randomBytes(1000));
    await hard.delete(admin, fourth.id);
    await expect(completeChecksums(catalog.images, stores, fourth)).rejects.toMatchObject({ kind: 'notFound' });
    expect(await catalog.images.find(fourth.id)).toBeUndefined();
  });
});
