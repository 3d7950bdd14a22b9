import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { isVisorError } from '../../core/errors.js';
import { configFileSchema } from '../../core/config/schema.js';
import { silentLogger } from '../../core/logging/logger.js';
import { FileStore } from '../../core/store/file/file-store.js';
import type { Caller } from './access.js';
import { ImageService } from './image-service.js';

/** The catalog side of the life cycle, on the real SQLite catalog and file store, with a clock the test moves. */
const admin: Caller = { name: 'admin', admin: true };
const alice: Caller = { id: 'alice-id', name: 'alice', admin: false };
const bob: Caller = { id: 'bob-id', name: 'bob', admin: false };
let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

async function world(softDeleteMs: number | undefined) {
  const dir = await mkdtemp(join(tmpdir(), 'visor-life-service-'));
  const catalog = new SqliteCatalog({ path: join(dir, 'catalog.db') });
  await catalog.init();
  const store = new FileStore({ root: join(dir, 'images'), fsync: false });
  let now = new Date('2026-06-01T00:00:00Z');
  const clock = { now: () => now };
  const service = new ImageService({
    catalog,
    stores: new Map([['local', store]]),
    defaultStore: 'local',
    logger: silentLogger,
    clock,
    ...(softDeleteMs !== undefined ? { softDeleteMs } : {}),
  });
  cleanup = async () => {
    await catalog.close();
    await rm(dir, { recursive: true, force: true });
  };
  const add = async (caller: Caller, bytes: Buffer) => {
    const image = await service.register(caller, {
      name: 'img',
      architecture: 'x86_64',
      diskFormat: 'raw',
      access: 'private',
    });
    return service.upload(caller, image.id, Readable.from([bytes]), { size: bytes.length });
  };
  return { service, store, catalog, add, advance: (ms: number) => (now = new Date(now.getTime() + ms)) };
}

const kindOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (e: unknown) => (isVisorError(e) ? e.kind : 'other'),
  );

describe('image service: soft delete, restore, purge, sweep', () => {
  it('deletes softly for 7 days unless configured otherwise (lifecycle.softDelete; 0: at once)', async () => {
    const week = 7 * 86_400_000;
    expect(configFileSchema.parse({}).lifecycle.softDelete).toBe(week);
    expect(configFileSchema.parse({ lifecycle: { softDelete: 0 } }).lifecycle.softDelete).toBe(0);
    expect(configFileSchema.parse({ lifecycle: { softDelete: '30d' } }).lifecycle.softDelete).toBe(30 * 86_400_000);
    expect(configFileSchema.safeParse({ lifecycle: { softDelete: -1 } }).success).toBe(false);
    const w = await world(undefined);
    const bytes = randomBytes(4096);
    const image = await w.add(admin, bytes);
    const deleted = await w.service.delete(admin, image.id);
    expect(deleted).toMatchObject({ status: 'deleted', deletedAt: '2026-06-01T00:00:00.000Z' });
    expect(Date.parse(deleted.purgeAfter!) - Date.parse(deleted.deletedAt!)).toBe(week);
    w.advance(week - 1);
    expect(await w.service.sweepLifecycle()).toEqual({ changed: 0, purged: 0 });
    const restored = await w.service.restore(admin, image.id);
    expect(restored.status).toBe('available');
    const { stream } = await w.service.download(admin, image.id);
    expect((await buffer(stream)).equals(bytes)).toBe(true);
  });
  it('keeps a deleted image and its bits, restores it byte for byte, then purges it when due', async () => {
    const w = await world(60_000);
    const bytes = randomBytes(4096);
    const image = await w.add(alice, bytes);
    const deleted = await w.service.delete(alice, image.id);
    expect(deleted).toMatchObject({
      status: 'deleted',
      deletedAt: '2026-06-01T00:00:00.000Z',
      purgeAfter: '2026-06-01T00:01:00.000Z',
    });
    expect(await kindOf(w.service.get(alice, image.id))).toBe('notFound');
    expect((await w.service.list(alice, {})).items).toEqual([]);
    expect((await w.service.list(alice, { filters: { status: 'deleted' } })).items.map((i) => i.id)).toEqual([
      image.id,
    ]);
    // Someone else cannot restore (nor even see) it.
    expect(await kindOf(w.service.restore(bob, image.id))).toBe('notFound');

    const restored = await w.service.restore(alice, image.id);
    expect(restored).toMatchObject({ status: 'available', location: image.location });
    expect(restored.deletedAt).toBeUndefined();
    const { stream } = await w.service.download(alice, image.id);
    expect((await buffer(stream)).equals(bytes)).toBe(true);

    await w.service.delete(alice, image.id);
    w.advance(59_000);
    expect(await w.service.sweepLifecycle()).toEqual({ changed: 0, purged: 0 });
    w.advance(1_000);
    expect(await w.service.sweepLifecycle()).toEqual({ changed: 0, purged: 1 });
    expect(await w.catalog.images.find(image.id)).toBeUndefined();
    expect(await kindOf(w.store.head(image.location!.uri))).toBe('notFound');
  });

  it('refuses to restore an image whose bits are gone, and keeps it deleted', async () => {
    const w = await world(60_000);
    const image = await w.add(alice, randomBytes(1024));
    await w.service.delete(alice, image.id);
    await w.store.delete(image.location!.uri);
    expect(await kindOf(w.service.restore(alice, image.id))).toBe('conflict');
    expect((await w.catalog.images.get(image.id)).status).toBe('deleted');
  });

  it('applies deprecation dates in the catalog: obsolete, then deleted (never a protected image)', async () => {
    const w = await world(0);
    const a = await w.add(admin, randomBytes(1024));
    const b = await w.add(admin, randomBytes(1024));
    await w.service.update(admin, b.id, { protected: true });
    for (const id of [a.id, b.id]) {
      await w.service.deprecate(admin, id, { obsoleteOn: '2026-06-02', deleteOn: '2026-06-03' });
    }
    w.advance(86_400_000 + 1);
    expect(await w.service.sweepLifecycle()).toEqual({ changed: 2, purged: 0 });
    expect((await w.catalog.images.get(a.id)).deprecation?.state).toBe('obsolete');
    w.advance(86_400_000);
    // Without a keeping period a due deletion is a purge, in the same sweep.
    expect(await w.service.sweepLifecycle()).toEqual({ changed: 1, purged: 1 });
    expect(await w.catalog.images.find(a.id)).toBeUndefined();
    expect((await w.catalog.images.get(b.id)).status).toBe('available');
    expect(await kindOf(w.service.delete(admin, b.id))).toBe('conflict');
    // A replacement must be a live, active image.
    expect(await kindOf(w.service.deprecate(admin, b.id, { replacement: a.id }))).toBe('invalidInput');
  });
});
