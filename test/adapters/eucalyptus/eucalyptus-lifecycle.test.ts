import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { planJson } from '../../../agent/sync/plan-view.js';
import { planTarget, syncTarget } from '../../../agent/sync/runner.js';
import { deprecate } from '../../../core/image/deprecation.js';
import { memorySyncWorld } from '../../support/memory-sync.js';
import { expectValidBodies, startWorld, type EucalyptusWorld } from './harness.js';

/**
 * The image life cycle in EC2/Eucalyptus, through the real agent and adapter against the
 * schema-checked EC2 double (bundles in the real S3 peer): deprecation as tags, obsolete as
 * hidden (no launch permission), deleted as deregistered, and a deletion deferred while an
 * instance runs from the image (DescribeInstances with an image-id filter), done once it is
 * terminated. Every DescribeInstances answer validates against the WSDL's types.
 */
const started = await startWorld('euca-lifecycle');
const skip = 'skip' in started ? started.skip : undefined;
const euca = 'skip' in started ? undefined : (started as EucalyptusWorld);

afterAll(async () => {
  if (euca) {
    await expectValidBodies(euca.doubles);
    await euca.close();
  }
});

describe('Eucalyptus: life cycle end to end (EC2 double)', () => {
  it('deprecated -> tags, obsolete -> hidden, deletion deferred while an instance runs, then done', async (ctx) => {
    if (skip || !euca) return ctx.skip(skip ?? 'no EC2 world');
    const world = await memorySyncWorld();
    try {
      const double = await euca.double();
      const old = await world.addImage('euca-old', randomBytes(8192));
      const fresh = await world.addImage('euca-new', randomBytes(8192));
      const target = world.target({ retire: { mode: 'delete' } }, { driver: euca.driver(double) });
      const at = (iso: string) => world.deps({ now: () => new Date(iso) });
      const t0 = new Date('2026-06-01T00:00:00Z');
      expect(await syncTarget(target, at(t0.toISOString()), { trigger: 'manual' })).toMatchObject({ drift: 0 });
      const copies = await target.driver.list();
      const oldCopy = copies.find((c) => c.markers?.imageId === old.id)!;
      const freshCopy = copies.find((c) => c.markers?.imageId === fresh.id)!;

      const current = await world.catalog.images.get(old.id);
      const schedule = { replacement: fresh.id, obsoleteOn: '2026-07-01', deleteOn: '2026-08-01' };
      await world.catalog.images.update(old.id, current.revision, deprecate(current, schedule, t0));
      expect(await syncTarget(target, at(t0.toISOString()), { trigger: 'manual' })).toMatchObject({ drift: 0 });
      expect((await target.driver.get(oldCopy.nativeId)).metadata.properties).toMatchObject({
        visor_lifecycle: 'deprecated',
        visor_replacement: freshCopy.nativeId,
        visor_replacement_id: fresh.id,
      });

      const july = await syncTarget(target, at('2026-07-02T00:00:00Z'), { trigger: 'manual' });
      expect(july.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
      expect(await target.driver.get(oldCopy.nativeId)).toMatchObject({ hidden: true });

      expect(target.driver.capabilities.detectsInUse).toBe(true);
      const instance = double.runInstance(oldCopy.nativeId);
      // A terminated instance of the fresh image does not hold anything.
      double.terminateInstance(double.runInstance(freshCopy.nativeId).id);
      expect(await target.driver.get(oldCopy.nativeId)).toMatchObject({ inUse: true });
      expect(await target.driver.get(freshCopy.nativeId)).toMatchObject({ inUse: false });

      const august = at('2026-08-02T00:00:00Z');
      const plan = await planTarget(target, august);
      expect(plan.actions).toEqual([]);
      const why = /deletion scheduled.*: deletion deferred while it is in use by VMs/;
      expect(plan.notes).toEqual([
        expect.objectContaining({ nativeId: oldCopy.nativeId, message: expect.stringMatching(why) }),
      ]);
      // What `visor plan --json` prints: no action, the note with its reason.
      expect(planJson(plan)).toMatchObject({ actions: [], notes: [{ message: expect.stringMatching(why) }] });
      const deferred = await syncTarget(target, august, { trigger: 'manual' });
      // What `visor status` and the dashboard show: the retire skipped, with the reason.
      expect(deferred.actions).toEqual([
        expect.objectContaining({ action: 'retire', result: 'skipped', detail: expect.stringMatching(why) }),
      ]);
      expect(double.image(oldCopy.nativeId)?.state).toBe('available');
      expect(double.calls.some((c) => c.action === 'DeregisterImage' && c.params['ImageId'] === oldCopy.nativeId)).toBe(
        false,
      );
      const filters = double.calls.filter((c) => c.action === 'DescribeInstances').map((c) => c.params);
      expect(filters.every((p) => p['Filter.1.Name'] === 'image-id')).toBe(true);

      double.terminateInstance(instance.id);
      expect((await planTarget(target, august)).actions).toEqual([
        expect.objectContaining({ kind: 'retire', mode: 'delete', reason: expect.not.stringMatching(/cannot tell/) }),
      ]);
      const deleted = await syncTarget(target, august, { trigger: 'manual' });
      expect(deleted.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
      const after = await target.driver.list();
      expect(after.map((c) => c.nativeId)).toEqual([freshCopy.nativeId]);
    } finally {
      await world.close();
    }
  }, 120_000);
});
