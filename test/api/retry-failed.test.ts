import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunRecord } from '../../core/catalog/port.js';
import { corruptStoredImage } from '../support/corrupt-image.js';
import { replicationWorld, type ReplicationWorld } from '../support/replication-world.js';

/**
 * "Retry failed" (POST /targets/:name/retry-failed): an admin runs again only the images whose
 * copy failed, apart from "sync now"; the placements of the others are kept as they were.
 */
describe('API: retry failed', () => {
  let world: ReplicationWorld;
  beforeAll(async () => {
    world = await replicationWorld();
  }, 60_000);
  afterAll(async () => world?.close());

  const statusIn = async (id: string, cloud: string) => {
    const { clouds } = (await world.client('admin').getJson(`/images/${id}/where`)) as {
      clouds: { target: string; status: string; detail?: string }[];
    };
    return clouds.find((c) => c.target === cloud)!;
  };

  it('retries only the failed image, for admins only, then has nothing left to retry', async () => {
    const [ubuntu, debian] = world.images.public;
    const restore = await corruptStoredImage(world.agent.server.catalog, debian!.id);
    const admin = world.client('admin');
    const first = ((await admin.postJson('/targets/east/sync?wait=true')) as { run: RunRecord }).run;
    expect(first.status).toBe('partial');
    const failed = first.actions.filter((a) => a.result === 'failed');
    expect(failed.map((a) => a.imageId)).toEqual([debian!.id]);
    expect(await statusIn(debian!.id, 'east')).toMatchObject({ status: 'failed' });
    const ubuntuBefore = await statusIn(ubuntu!.id, 'east');
    expect(ubuntuBefore.status).toBe('in-sync');

    // Not for users who are not admins; nothing runs.
    await expect(world.client('bob').postJson('/targets/east/retry-failed')).rejects.toMatchObject({
      kind: 'forbidden',
    });
    expect(await world.agent.server.catalog.runs.list({ target: 'east' })).toHaveLength(1);

    // Still corrupt: the retry fails again, and says so.
    const again = (await admin.postJson('/targets/east/retry-failed?wait=true')) as {
      images: string[];
      run: RunRecord;
    };
    expect(again.images).toEqual([debian!.id]);
    expect(again.run).toMatchObject({ trigger: 'retry', status: 'failed' });
    expect(again.run.actions.map((a) => [a.imageId, a.result])).toEqual([[debian!.id, 'failed']]);

    await restore();
    const fixed = (await admin.postJson(`/targets/east/retry-failed?wait=true&image=${debian!.id}`)) as {
      images: string[];
      run: RunRecord;
    };
    expect(fixed.images).toEqual([debian!.id]);
    expect(fixed.run).toMatchObject({ trigger: 'retry', status: 'succeeded', drift: 0 });
    expect(fixed.run.actions.map((a) => [a.name, a.result])).toEqual([['debian-12', 'created']]);
    expect(await statusIn(debian!.id, 'east')).toMatchObject({ status: 'in-sync' });
    // The limited run kept the other images' placements as they were.
    expect(await statusIn(ubuntu!.id, 'east')).toEqual(ubuntuBefore);
    // West never ran: untouched.
    expect(await statusIn(debian!.id, 'west')).toMatchObject({ status: 'unknown' });

    await expect(admin.postJson('/targets/east/retry-failed')).rejects.toMatchObject({
      kind: 'conflict',
      message: expect.stringContaining('nothing failed'),
    });
  });

  it('answers bad requests clearly', async () => {
    const admin = world.client('admin');
    await expect(admin.postJson('/targets/nowhere/retry-failed')).rejects.toMatchObject({ kind: 'notFound' });
    await expect(admin.postJson('/targets/east/retry-failed?image=nope')).rejects.toMatchObject({
      kind: 'invalidInput',
    });
    const ubuntu = world.images.public[0]!;
    await expect(admin.postJson(`/targets/east/retry-failed?image=${ubuntu.id}`)).rejects.toMatchObject({
      kind: 'conflict',
    });
  });
});
