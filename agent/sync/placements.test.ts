import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { memorySyncWorld, type MemorySyncWorld } from '../../test/support/memory-sync.js';
import { MemoryDriver } from '../../core/iaas/memory/driver.js';
import type { CreateRequest, IaasDriver } from '../../core/iaas/port.js';
import { VisorError } from '../../core/errors.js';
import { whereIs } from './placements.js';
import { syncTarget } from './runner.js';

/**
 * The replication status a run records (what `visor where` and the dashboard show): each image's
 * standing in each cloud, from the run's verification pass, against the memory cloud.
 */

let world: MemorySyncWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** A memory driver whose creates of images named `failing` are refused by the cloud. */
function refusing(base: MemoryDriver, failing: string): IaasDriver {
  return new Proxy(base, {
    get: (target, key) => {
      if (key === 'create') {
        return (request: CreateRequest) =>
          request.image.name === failing
            ? Promise.reject(new VisorError('invalidInput', 'the cloud refuses this image (quota)'))
            : target.create(request);
      }
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as IaasDriver;
}

describe('placements recorded by a run', () => {
  it('says unknown before any run, in-sync with native ids after, absent where never placed', async () => {
    world = await memorySyncWorld();
    const alpha = await world.addImage('alpha', randomBytes(8192));
    const lab = world.target();
    expect(await whereIs(world.catalog.state, ['lab'], alpha.id)).toEqual([
      { target: 'lab', status: 'unknown', copies: [] },
    ]);
    const run = await syncTarget(lab, world.deps(), { trigger: 'manual' });
    expect(run.status).toBe('succeeded');
    const native = (await lab.driver.list()).find((c) => c.markers?.imageId === alpha.id)!;
    const [where] = await whereIs(world.catalog.state, ['lab'], alpha.id);
    expect(where).toMatchObject({
      target: 'lab',
      status: 'in-sync',
      verified: { run: run.id },
      copies: [{ nativeId: native.nativeId, name: 'alpha', state: 'active', hidden: false }],
    });
    // A private image is not selected by the default policy: after verification it is absent, not unknown.
    const secret = await world.addImage('secret', randomBytes(4096), { access: 'private', owner: 'u1' });
    await syncTarget(lab, world.deps(), { trigger: 'manual' });
    expect((await whereIs(world.catalog.state, ['lab'], secret.id))[0]).toMatchObject({ status: 'absent', copies: [] });
  });

  it('records a failure with its reason, then in-sync once it works, keeping "since" while unchanged', async () => {
    world = await memorySyncWorld();
    const good = await world.addImage('good', randomBytes(4096));
    const bad = await world.addImage('bad', randomBytes(4096));
    const base = new MemoryDriver({ cloud: world.cloud, project: 'lab', pollIntervalMs: 2 });
    const first = await syncTarget(world.target({}, { driver: refusing(base, 'bad') }), world.deps(), {
      trigger: 'manual',
    });
    expect(first.status).toBe('partial');
    // The failed task keeps its own log lines (the task log), with the error as a plain field.
    const log = first.actions.find((a) => a.name === 'bad')!.log!;
    expect(log.at(-1)).toMatchObject({ level: 'error', message: 'action failed' });
    expect(log.at(-1)!.fields?.['error']).toContain('the cloud refuses this image (quota)');
    const [failed] = await whereIs(world.catalog.state, ['lab'], bad.id);
    expect(failed).toMatchObject({ status: 'failed', copies: [] });
    expect(failed!.detail).toContain('the cloud refuses this image (quota)');
    const [kept] = await whereIs(world.catalog.state, ['lab'], good.id);
    expect(kept!.status).toBe('in-sync');

    const second = await syncTarget(world.target({}, { driver: base }), world.deps(), { trigger: 'manual' });
    expect(second.status).toBe('succeeded');
    const [fixed] = await whereIs(world.catalog.state, ['lab'], bad.id);
    expect(fixed).toMatchObject({ status: 'in-sync', verified: { run: second.id } });
    const [still] = await whereIs(world.catalog.state, ['lab'], good.id);
    expect(still!.since).toBe(kept!.since);
  });

  it('shows a retired copy as retired (hidden), and the status of each cloud separately', async () => {
    world = await memorySyncWorld();
    const image = await world.addImage('gone-soon', randomBytes(4096));
    const lab = world.target({}, {}, 'lab');
    const other = world.target({ selector: { names: ['nothing-*'] } }, { project: 'other' }, 'other');
    await syncTarget(lab, world.deps(), { trigger: 'manual' });
    await syncTarget(other, world.deps(), { trigger: 'manual' });
    // The image leaves the selection: the lab copy is hidden (retire mode hide).
    await world.catalog.images.update(image.id, image.revision, { access: 'private' });
    const run = await syncTarget(lab, world.deps(), { trigger: 'manual' });
    expect(run.actions.map((a) => `${a.action}:${a.result}`)).toEqual(['retire:retired']);
    const where = await whereIs(world.catalog.state, ['lab', 'other', 'never'], image.id);
    expect(where.map((w) => [w.target, w.status])).toEqual([
      ['lab', 'retired'],
      ['other', 'absent'],
      ['never', 'unknown'],
    ]);
    expect(where[0]!.copies[0]).toMatchObject({ hidden: true });
  });

  it('leaves placements alone on a dry run', async () => {
    world = await memorySyncWorld();
    const image = await world.addImage('dry', randomBytes(4096));
    await syncTarget(world.target(), world.deps(), { trigger: 'manual', dryRun: true });
    expect((await whereIs(world.catalog.state, ['lab'], image.id))[0]!.status).toBe('unknown');
  });
});
