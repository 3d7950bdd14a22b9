import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { planTarget, syncTarget } from '../../../agent/sync/runner.js';
import { deprecate } from '../../../core/image/deprecation.js';
import { memorySyncWorld } from '../../support/memory-sync.js';
import { expectValidBodies, startWorld, type EucalyptusWorld } from './harness.js';

/**
 * The image life cycle in EC2/Eucalyptus, through the real agent and adapter against the
 * schema-checked EC2 double (bundles in the real S3 peer): deprecation as tags, obsolete as
 * hidden (no launch permission), deleted as deregistered. EC2's adapter cannot see instances,
 * so the plan says the cloud cannot tell whether VMs use the image.
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
  it('deprecated -> tags, obsolete -> hidden, deleted -> deregistered', async (ctx) => {
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

      const plan = await planTarget(target, at('2026-08-02T00:00:00Z'));
      expect(plan.actions).toEqual([
        expect.objectContaining({
          kind: 'retire',
          mode: 'delete',
          reason: expect.stringMatching(/cannot tell whether VMs use it/),
        }),
      ]);
      const august = await syncTarget(target, at('2026-08-02T00:00:00Z'), { trigger: 'manual' });
      expect(august.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
      const after = await target.driver.list();
      expect(after.map((c) => c.nativeId)).toEqual([freshCopy.nativeId]);
    } finally {
      await world.close();
    }
  }, 120_000);
});
