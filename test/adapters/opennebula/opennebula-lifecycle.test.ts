import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startContentServer, type ContentServer } from '../../../agent/content-server.js';
import { syncTarget } from '../../../agent/sync/runner.js';
import { deprecate, undeprecate } from '../../../core/image/deprecation.js';
import { memorySyncWorld, type MemorySyncWorld } from '../../support/memory-sync.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../../doubles/opennebula/index.js';
import { driverFor, expectValidDocuments } from './harness.js';

/**
 * The image life cycle in OpenNebula, through the real agent (planner, executor, runner, SQLite
 * catalog, file store) and the real adapter against the schema-checked oned double: deprecation
 * as plain VISOR_* attributes, obsolete as DISABLED (oned has no hidden flag), a deletion deferred
 * while VMs use the image (RUNNING_VMS) and done once they stop.
 */
let double: OpenNebulaDouble;
let content: ContentServer;
let world: MemorySyncWorld | undefined;
beforeAll(async () => {
  double = await startOpenNebulaDouble({ generation: 7 });
  content = await startContentServer(undefined);
});
afterEach(async () => {
  await world?.close();
  world = undefined;
});
afterAll(async () => {
  await expectValidDocuments([double]);
  await content.close();
  await double.close();
});

describe('OpenNebula: life cycle end to end (double)', () => {
  it('deprecated -> attributes, obsolete -> DISABLED, deleted -> deferred while in use, then deleted', async () => {
    world = await memorySyncWorld();
    const old = await world.addImage('one-old', randomBytes(8192));
    const fresh = await world.addImage('one-new', randomBytes(8192));
    const target = world.target({ retire: { mode: 'delete' } }, { driver: driverFor(double) });
    const publish = (source: Parameters<typeof content.publisher.publish>[0]) => content.publisher.publish(source);
    const at = (iso: string) => world!.deps({ now: () => new Date(iso), publish });
    const t0 = new Date('2026-06-01T00:00:00Z');
    expect(await syncTarget(target, at(t0.toISOString()), { trigger: 'manual' })).toMatchObject({ drift: 0 });
    const copies = await target.driver.list();
    const oldCopy = copies.find((c) => c.markers?.imageId === old.id)!;
    const freshCopy = copies.find((c) => c.markers?.imageId === fresh.id)!;

    const current = await world.catalog.images.get(old.id);
    const schedule = { replacement: fresh.id, obsoleteOn: '2026-07-01', deleteOn: '2026-08-01' };
    await world.catalog.images.update(old.id, current.revision, deprecate(current, schedule, t0));
    expect(await syncTarget(target, at(t0.toISOString()), { trigger: 'manual' })).toMatchObject({ drift: 0 });
    const template = double.image(Number(oldCopy.nativeId))!.template;
    expect(template.get('VISOR_LIFECYCLE')).toBe('deprecated');
    expect(template.get('VISOR_REPLACEMENT')).toBe(freshCopy.nativeId);
    expect(template.get('VISOR_REPLACEMENT_ID')).toBe(fresh.id);
    expect(template.get('VISOR_DELETE_ON')).toBe('2026-08-01T00:00:00.000Z');

    const july = await syncTarget(target, at('2026-07-02T00:00:00Z'), { trigger: 'manual' });
    expect(july.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
    expect(await target.driver.get(oldCopy.nativeId)).toMatchObject({ state: 'disabled' });

    double.attachVm(Number(oldCopy.nativeId), 42);
    const deferred = await syncTarget(target, at('2026-08-02T00:00:00Z'), { trigger: 'manual' });
    expect(deferred.actions).toEqual([
      expect.objectContaining({ result: 'skipped', detail: expect.stringMatching(/deletion scheduled.*in use/) }),
    ]);
    expect(double.image(Number(oldCopy.nativeId))).toBeDefined();
    double.detachVm(Number(oldCopy.nativeId), 42);
    const deleted = await syncTarget(target, at('2026-08-02T00:00:00Z'), { trigger: 'manual' });
    expect(deleted.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
    const after = await target.driver.list();
    expect(after.map((c) => c.nativeId)).toEqual([freshCopy.nativeId]);
  });

  it('undeprecating an obsolete image enables its DISABLED copy again: same id, nothing allocated', async () => {
    world = await memorySyncWorld();
    const image = await world.addImage('one-back', randomBytes(8192));
    const target = world.target({ retire: { mode: 'delete' } }, { driver: driverFor(double) });
    const publish = (source: Parameters<typeof content.publisher.publish>[0]) => content.publisher.publish(source);
    const at = (iso: string) => world!.deps({ now: () => new Date(iso), publish });
    expect(await syncTarget(target, at('2026-06-01T00:00:00Z'), { trigger: 'manual' })).toMatchObject({ drift: 0 });
    const [copy] = (await target.driver.list()).filter((c) => c.markers?.imageId === image.id);
    const name = double.image(Number(copy!.nativeId))!.name;
    const current = await world.catalog.images.get(image.id);
    const schedule = { obsoleteOn: '2026-07-01' };
    await world.catalog.images.update(image.id, current.revision, deprecate(current, schedule, new Date('2026-06-01')));
    const july = await syncTarget(target, at('2026-07-02T00:00:00Z'), { trigger: 'manual' });
    expect(july.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
    expect(await target.driver.get(copy!.nativeId)).toMatchObject({ state: 'disabled', hidden: true });

    const deprecated = await world.catalog.images.get(image.id);
    await world.catalog.images.update(image.id, deprecated.revision, undeprecate(deprecated));
    const allocations = () => double.calls.filter((c) => c.method === 'one.image.allocate').length;
    const allocated = allocations();
    const back = await syncTarget(target, at('2026-07-03T00:00:00Z'), { trigger: 'manual' });
    expect(back.actions).toEqual([
      expect.objectContaining({ action: 'update', result: 'updated', nativeId: copy!.nativeId }),
    ]);
    expect(allocations()).toBe(allocated);
    expect(await target.driver.get(copy!.nativeId)).toMatchObject({ state: 'active', hidden: false });
    const stored = double.image(Number(copy!.nativeId))!;
    expect(stored.name).toBe(name);
    expect(stored.template.get('VISOR_LIFECYCLE')).toBeUndefined();
    expect((await target.driver.list()).filter((c) => c.markers?.imageId === image.id)).toHaveLength(1);
    expect((await syncTarget(target, at('2026-07-03T00:00:00Z'), { trigger: 'manual' })).actions).toEqual([]);
  });
});
