import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { memorySyncWorld, type MemorySyncWorld } from '../../test/support/memory-sync.js';
import type { CloudImage } from '../../core/iaas/port.js';
import { deprecate, softDelete, undeprecate } from '../../core/image/deprecation.js';
import type { Image } from '../../core/image/model.js';
import { syncTarget } from './runner.js';
import { planTarget } from './runner.js';

/**
 * The image life cycle carried into a cloud, end to end against the memory cloud (the real
 * planner, executor, runner, SQLite catalog and file store): deprecation shown in the copy's
 * properties, obsolete hidden (or disabled), deleted removed unless in use or protected, and
 * families rolled forward without a moment lacking a usable latest.
 */
let world: MemorySyncWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

const t0 = new Date('2026-06-01T00:00:00.000Z');
const results = (actions: readonly { action: string; result: string }[]) =>
  actions.map((a) => `${a.action}:${a.result}`).sort();
const copyOf = (copies: readonly CloudImage[], image: Image) => copies.find((c) => c.markers?.imageId === image.id);

async function change(
  w: MemorySyncWorld,
  image: Image,
  changes: Parameters<MemorySyncWorld['catalog']['images']['update']>[2],
) {
  const current = await w.catalog.images.get(image.id);
  return w.catalog.images.update(image.id, current.revision, changes);
}

describe('life cycle in a cloud (memory cloud)', () => {
  it('flags a deprecated copy with its replacement, hides it when obsolete, deletes it when deleted', async () => {
    world = await memorySyncWorld();
    const old = await world.addImage('lc-old', randomBytes(4096));
    const fresh = await world.addImage('lc-new', randomBytes(4096));
    const target = world.target({ retire: { mode: 'delete' } });
    const deps = world.deps({ now: () => t0 });
    expect((await syncTarget(target, deps, { trigger: 'manual' })).drift).toBe(0);

    const obsoleteOn = '2026-07-01T00:00:00.000Z';
    await change(world, old, deprecate(old, { replacement: fresh.id, obsoleteOn, deleteOn: '2026-08-01' }, t0));
    const flagged = await syncTarget(target, deps, { trigger: 'manual' });
    expect(flagged).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(results(flagged.actions)).toEqual(['update:updated']);
    let copies = await target.driver.list();
    const freshNative = copyOf(copies, fresh)!.nativeId;
    expect(copyOf(copies, old)).toMatchObject({ state: 'active', hidden: false });
    expect(copyOf(copies, old)!.metadata.properties).toMatchObject({
      visor_lifecycle: 'deprecated',
      visor_replacement: freshNative,
      visor_replacement_id: fresh.id,
      visor_obsolete_on: obsoleteOn,
      visor_delete_on: '2026-08-01T00:00:00.000Z',
    });

    // The obsolete date passes: hidden (this cloud's soft mode), though the policy would delete.
    const july = world.deps({ now: () => new Date('2026-07-02T00:00:00Z') });
    const plan = await planTarget(target, july);
    expect(plan.actions).toEqual([
      expect.objectContaining({ kind: 'retire', mode: 'hide', reason: expect.stringContaining('obsolete since') }),
    ]);
    expect((await syncTarget(target, july, { trigger: 'manual' })).drift).toBe(0);
    copies = await target.driver.list();
    expect(copyOf(copies, old)).toMatchObject({ hidden: true });
    expect(copyOf(copies, fresh)).toMatchObject({ hidden: false });

    // The deletion date passes while a VM uses the copy: deferred, with the reason in the run.
    const august = world.deps({ now: () => new Date('2026-08-02T00:00:00Z') });
    world.cloud.use(copyOf(copies, old)!.nativeId, 1);
    const deferred = await syncTarget(target, august, { trigger: 'manual' });
    expect(deferred.actions).toEqual([
      expect.objectContaining({
        action: 'retire',
        result: 'skipped',
        detail: expect.stringMatching(/deletion scheduled.*in use/),
      }),
    ]);
    expect(copyOf(await target.driver.list(), old)).toBeDefined();
    // The VM stops: deleted.
    world.cloud.use(copyOf(copies, old)!.nativeId, -1);
    const deleted = await syncTarget(target, august, { trigger: 'manual' });
    expect(results(deleted.actions)).toEqual(['retire:retired']);
    copies = await target.driver.list();
    expect(copyOf(copies, old)).toBeUndefined();
    expect(copyOf(copies, fresh)).toMatchObject({ state: 'active', hidden: false });
  });

  it('never hides or deletes the copies of a protected image; a deleted one goes at once', async () => {
    world = await memorySyncWorld();
    const kept = await world.addImage('lc-protected', randomBytes(2048), { protected: true });
    const gone = await world.addImage('lc-gone', randomBytes(2048));
    const target = world.target();
    const deps = world.deps({ now: () => t0 });
    await syncTarget(target, deps, { trigger: 'manual' });
    await change(world, kept, { access: 'private' }); // no longer selected: would be hidden
    await change(world, gone, softDelete(t0, 86_400_000));
    const run = await syncTarget(target, deps, { trigger: 'manual' });
    expect(run.actions).toContainEqual(
      expect.objectContaining({ action: 'retire', result: 'skipped', detail: expect.stringMatching(/protected/) }),
    );
    expect(run.actions).toContainEqual(
      expect.objectContaining({ action: 'retire', result: 'retired', imageId: gone.id }),
    );
    const copies = await target.driver.list();
    expect(copyOf(copies, kept)).toMatchObject({ state: 'active', hidden: false });
    expect(copyOf(copies, gone)).toBeUndefined();
  });

  it('rolls a family forward with keep: 2 over 4 versions, never without a usable latest', async () => {
    world = await memorySyncWorld();
    const target = world.target({ families: { keep: 2, latestName: '{family}-latest' }, retire: { mode: 'delete' } });
    const deps = world.deps({ now: () => t0 });
    const versions: Image[] = [];
    const latestNames = (copies: readonly CloudImage[]) =>
      copies.filter((c) => c.name === 'deb-latest' && c.state === 'active' && !c.hidden);
    for (let v = 1; v <= 4; v++) {
      const added = await world.addImage(`deb v${v}`, randomBytes(2048), { family: 'deb' });
      versions.push(await change(world, added, { uploadedAt: `2026-0${v}-01T00:00:00.000Z` }));
      // The first run makes the new version's copy the latest while the previous one keeps the
      // name; only a run that finds the new copy usable takes the name from the previous one.
      const first = await syncTarget(target, deps, { trigger: 'manual' });
      const during = latestNames(await target.driver.list())
        .map((c) => c.markers!.imageId)
        .sort();
      const expected = v === 1 ? [versions[0]!.id] : [versions[v - 2]!.id, versions[v - 1]!.id].sort();
      expect(during, `after v${v}, first run`).toEqual(expected);
      expect(first.status).toBe('succeeded');
      const second = await syncTarget(target, deps, { trigger: 'manual' });
      expect(second.drift).toBe(0);
      const settled = await target.driver.list();
      expect(latestNames(settled).map((c) => c.markers!.imageId)).toEqual([versions[v - 1]!.id]);
      expect(settled.filter((c) => c.markers).length).toBe(Math.min(v, 2));
    }
    const copies = await target.driver.list();
    expect(copies.map((c) => c.name).sort()).toEqual(['deb v3', 'deb-latest']);
    expect(copyOf(copies, versions[3]!)!.metadata.properties).toMatchObject({
      visor_family: 'deb',
      visor_family_latest: 'true',
    });
    expect(copyOf(copies, versions[2]!)!.metadata.properties?.['visor_family_latest']).toBeUndefined();

    // Held back from latest: v4 stays, v3 becomes the latest again.
    await change(world, versions[3]!, { excludeFromLatest: true });
    await syncTarget(target, deps, { trigger: 'manual' });
    await syncTarget(target, deps, { trigger: 'manual' });
    const held = await target.driver.list();
    expect(latestNames(held).map((c) => c.markers!.imageId)).toEqual([versions[2]!.id]);
    expect(copyOf(held, versions[3]!)!.name).toBe('deb v4');
  });

  it.each(['hide', 'disable'] as const)(
    'undeprecated after going obsolete (%s): the same copy shown again, nothing uploaded twice',
    async (obsolete) => {
      world = await memorySyncWorld();
      const image = await world.addImage(`lc-back-${obsolete}`, randomBytes(4096));
      const target = world.target({ retire: { mode: 'delete' }, lifecycle: { obsolete } });
      const at = (iso: string) => world!.deps({ now: () => new Date(iso) });
      expect((await syncTarget(target, at(t0.toISOString()), { trigger: 'manual' })).drift).toBe(0);
      const copy = copyOf(await target.driver.list(), image)!;
      await change(world, image, deprecate(image, { obsoleteOn: '2026-07-01' }, t0));
      const gone = await syncTarget(target, at('2026-07-02T00:00:00Z'), { trigger: 'manual' });
      expect(results(gone.actions)).toEqual(['retire:retired']);
      const retired = await target.driver.get(copy.nativeId);
      expect(obsolete === 'hide' ? retired.hidden : retired.state === 'disabled').toBe(true);

      await change(world, image, undeprecate(await world.catalog.images.get(image.id)));
      const plan = await planTarget(target, at('2026-07-03T00:00:00Z'));
      const shown = obsolete === 'hide' ? 'hidden -> visible' : 'disabled -> active';
      expect(plan.actions).toEqual([
        expect.objectContaining({
          kind: 'update',
          nativeId: copy.nativeId,
          reveal: true,
          changes: expect.arrayContaining([shown]),
        }),
      ]);
      const back = await syncTarget(target, at('2026-07-03T00:00:00Z'), { trigger: 'manual' });
      expect(back).toMatchObject({ status: 'succeeded', drift: 0 });
      expect(results(back.actions)).toEqual(['update:updated']);
      const copies = (await target.driver.list()).filter((c) => c.markers?.imageId === image.id);
      expect(copies).toEqual([expect.objectContaining({ nativeId: copy.nativeId, state: 'active', hidden: false })]);
      expect(copies[0]!.metadata.properties?.['visor_lifecycle']).toBeUndefined();
    },
  );

  it('where the cloud cannot show a copy again, a new one replaces the hidden one', async () => {
    world = await memorySyncWorld();
    const image = await world.addImage('lc-noreveal', randomBytes(4096));
    const target = world.target({ retire: { mode: 'delete' } });
    const driver = target.driver;
    // A plugin's driver without reveal: the planner must not count on it.
    Object.defineProperty(driver, 'capabilities', { value: { ...driver.capabilities, reveals: [] } });
    const at = (iso: string) => world!.deps({ now: () => new Date(iso) });
    await syncTarget(target, at(t0.toISOString()), { trigger: 'manual' });
    const copy = copyOf(await driver.list(), image)!;
    await change(world, image, deprecate(image, { obsoleteOn: '2026-07-01' }, t0));
    await syncTarget(target, at('2026-07-02T00:00:00Z'), { trigger: 'manual' });
    await change(world, image, undeprecate(await world.catalog.images.get(image.id)));
    const back = await syncTarget(target, at('2026-07-03T00:00:00Z'), { trigger: 'manual' });
    expect(results(back.actions)).toEqual(['create:created', 'retire:retired']);
    expect(copyOf(await driver.list(), image)!.nativeId).not.toBe(copy.nativeId);
  });
});
