import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replicationWorld, type ReplicationWorld } from '../support/replication-world.js';

/**
 * The replication read side of the API (runs, tasks, where, clouds, matrix), signed requests
 * against a running agent with two memory clouds: what each user may read of it.
 */
describe('API: runs, where, clouds and the matrix', () => {
  let world: ReplicationWorld;
  beforeAll(async () => {
    world = await replicationWorld();
  }, 60_000);
  afterAll(async () => world?.close());

  interface Placement {
    target: string;
    status: string;
    copies: { nativeId: string; name: string }[];
    verified?: { run: string };
  }
  const where = async (user: 'admin' | 'bob' | 'carol', id: string) =>
    (await world.client(user).getJson(`/images/${id}/where`)) as { clouds: Placement[] };

  it('before any run: every cloud unknown; the clouds listed with adapter and schedule', async () => {
    const ubuntu = world.images.public[0]!;
    expect((await where('bob', ubuntu.id)).clouds.map((c) => [c.target, c.status])).toEqual([
      ['east', 'unknown'],
      ['west', 'unknown'],
    ]);
    const { clouds } = (await world.client('bob').getJson('/clouds')) as { clouds: Record<string, unknown>[] };
    expect(clouds).toEqual([
      expect.objectContaining({
        name: 'east',
        adapter: 'memory',
        enabled: true,
        schedule: '0 3 * * *',
        running: false,
      }),
      expect.objectContaining({ name: 'west', adapter: 'memory', enabled: true }),
    ]);
    expect(clouds[0]!['nextRun']).toMatch(/^\d{4}-\d\d-\d\dT03:00:00/);
    expect(clouds[1]).not.toHaveProperty('lastRun');
    // The plan (what the next run would do) is the admins': it lists the cloud.
    const { plan } = (await world.client('admin').getJson('/targets/west/plan')) as {
      plan: { target: string; actions: { kind: string; name: string; imageId: string }[] };
    };
    expect(plan.actions.map((a) => `${a.kind} ${a.name}`).sort()).toEqual([
      'create ubuntu-22.04',
      'create ubuntu-24.04',
    ]);
    await expect(world.client('bob').getJson('/targets/west/plan')).rejects.toMatchObject({ kind: 'forbidden' });
    await expect(world.client('admin').getJson('/targets/nowhere/plan')).rejects.toMatchObject({ kind: 'notFound' });
  });

  it('after runs: where names native ids per cloud; runs and tasks list what each user may see', async () => {
    const admin = world.client('admin');
    const east = (await admin.postJson('/targets/east/sync?wait=true')) as { run: { id: string; status: string } };
    const west = (await admin.postJson('/targets/west/sync?wait=true')) as { run: { id: string; status: string } };
    expect([east.run.status, west.run.status]).toEqual(['succeeded', 'succeeded']);

    const ubuntu = world.images.public[0]!;
    const debian = world.images.public[1]!;
    const placed = (await where('bob', ubuntu.id)).clouds;
    expect(placed.map((c) => [c.target, c.status])).toEqual([
      ['east', 'in-sync'],
      ['west', 'in-sync'],
    ]);
    expect(placed[0]!.copies).toEqual([
      expect.objectContaining({ name: 'ubuntu-24.04', nativeId: expect.any(String) }),
    ]);
    expect(placed[0]!.copies[0]!.nativeId).not.toBe(placed[1]!.copies[0]!.nativeId);
    expect(placed[0]!.verified?.run).toBe(east.run.id);
    // west selects ubuntu-* only: debian is absent there (verified), not unknown.
    expect((await where('bob', debian.id)).clouds.map((c) => c.status)).toEqual(['in-sync', 'absent']);

    const adminRuns = (await admin.getJson('/runs')) as {
      runs: { id: string; target: string; tasks: number; bytes: number }[];
    };
    expect(adminRuns.runs.map((r) => r.target)).toEqual(['west', 'east']);
    expect(adminRuns.runs[1]).toMatchObject({ id: east.run.id, tasks: 5, counts: { created: 5 } });
    expect(adminRuns.runs[1]!.bytes).toBe(5 * 64 * 1024);
    const eastOnly = (await admin.getJson('/runs', { target: 'east', limit: '1' })) as { runs: { id: string }[] };
    expect(eastOnly.runs.map((r) => r.id)).toEqual([east.run.id]);

    const task = (await admin.getJson(`/runs/${east.run.id}`)) as {
      run: { actions: { name: string; nativeId: string }[] };
    };
    expect(task.run.actions.map((a) => a.name).sort()).toEqual(world.images.public.map((i) => i.name).sort());
    expect(task.run.actions.every((a) => typeof a.nativeId === 'string')).toBe(true);
  });

  it('private images stay private: in where, runs, tasks and the matrix', async () => {
    const { bobs, carols } = world.images;
    // No configured cloud takes private images: a run that names them is written to the catalog as
    // an agent with such a cloud would have written it.
    const run = {
      id: '00000000-0000-4000-8000-000000000001',
      target: 'east',
      agent: 'test',
      trigger: 'cli' as const,
      dryRun: false,
      status: 'failed' as const,
      startedAt: new Date(Date.now() - 1000).toISOString(),
      finishedAt: new Date().toISOString(),
      error: 'cloud at https://internal.example:5000 unreachable',
      actions: [
        {
          action: 'create',
          result: 'failed' as const,
          imageId: bobs.id,
          name: bobs.name,
          error: { kind: 'quota', message: 'full' },
          log: [
            {
              at: new Date().toISOString(),
              level: 'error',
              message: 'action failed',
              fields: { host: 'internal.example' },
            },
          ],
        },
        { action: 'create', result: 'failed' as const, imageId: carols.id, name: carols.name },
        { action: 'cleanup', result: 'cleaned' as const, nativeId: 'n-42', name: 'leftover' },
      ],
    };
    await world.agent.server.catalog.runs.create(run);
    const asBob = (await world.client('bob').getJson(`/runs/${run.id}`)) as {
      run: { actions: { name: string }[]; error: string; tasks: number };
    };
    expect(asBob.run.actions.map((a) => a.name)).toEqual(['bob-secret']);
    expect(asBob.run.tasks).toBe(1);
    expect(asBob.run.error).not.toContain('internal.example');
    const asAdmin = (await world.client('admin').getJson(`/runs/${run.id}`)) as {
      run: { actions: unknown[]; error: string };
    };
    expect(asAdmin.run.actions).toHaveLength(3);
    expect(JSON.stringify(asAdmin.run.actions[0])).toContain('"message":"action failed"');
    expect(asBob.run.actions[0]).not.toHaveProperty('log');
    expect(asAdmin.run.error).toContain('internal.example');
    const listed = JSON.stringify(await world.client('bob').getJson('/runs'));
    expect(listed).not.toContain('carol-secret');
    expect(listed).not.toContain('internal.example');

    await expect(world.client('bob').getJson(`/images/${carols.id}/where`)).rejects.toMatchObject({ kind: 'notFound' });
    expect((await where('carol', carols.id)).clouds).toHaveLength(2);

    const matrix = (await world.client('bob').getJson('/clouds/matrix', { limit: '100' })) as {
      clouds: string[];
      images: { name: string; clouds: Record<string, { status: string; nativeIds: string[] }> }[];
    };
    expect(matrix.clouds).toEqual(['east', 'west']);
    const names = matrix.images.map((i) => i.name);
    expect(names).toContain('bob-secret');
    expect(names).not.toContain('carol-secret');
    const ubuntu = matrix.images.find((i) => i.name === 'ubuntu-24.04')!;
    expect(ubuntu.clouds['east']).toMatchObject({ status: 'in-sync', nativeIds: [expect.any(String)] });
    const clouds = JSON.stringify(await world.client('bob').getJson('/clouds'));
    expect(clouds).not.toContain('internal.example');
  });

  it('pages the matrix with the listing filters, and refuses bad input clearly', async () => {
    const client = world.client('admin');
    const first = (await client.getJson('/clouds/matrix', { limit: '2', sort: 'name' })) as {
      images: { name: string }[];
      next: string;
    };
    expect(first.images.map((i) => i.name)).toEqual(['alma-9', 'bob-secret']);
    const second = (await client.getJson('/clouds/matrix', { limit: '2', sort: 'name', marker: first.next })) as {
      images: { name: string }[];
    };
    expect(second.images.map((i) => i.name)).toEqual(['carol-secret', 'debian-12']);
    const tagged = (await client.getJson('/clouds/matrix', { tags: 'lts' })) as { images: { name: string }[] };
    expect(tagged.images.map((i) => i.name).sort()).toEqual(['debian-12', 'ubuntu-22.04']);
    await expect(client.getJson('/runs', { limit: '0' })).rejects.toMatchObject({ kind: 'invalidInput' });
    await expect(client.getJson('/runs', { target: 'Bad Name' })).rejects.toMatchObject({ kind: 'invalidInput' });
    await expect(client.getJson('/runs/not-a-run')).rejects.toMatchObject({ kind: 'notFound' });
    await expect(client.getJson('/images/not-an-id/where')).rejects.toMatchObject({ kind: 'notFound' });
  });

  it('refuses unsigned requests', async () => {
    for (const path of ['/runs', '/clouds', '/clouds/matrix', `/images/${world.images.public[0]!.id}/where`]) {
      const response = await fetch(`${world.url}${path}`);
      expect(response.status, path).toBe(401);
    }
  });
});
