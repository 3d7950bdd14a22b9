import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVisorAsync, stackLine } from '../support/cli.js';
import { corruptStoredImage } from '../support/corrupt-image.js';
import { replicationWorld, type ReplicationWorld } from '../support/replication-world.js';

/** `visor runs` and `visor where` (the built executable) against a running agent with two memory clouds. */
describe('visor runs and visor where', () => {
  let world: ReplicationWorld;
  let env: Record<string, string>;
  let eastRun: string;
  beforeAll(async () => {
    world = await replicationWorld();
    env = {
      VISOR_URL: world.url,
      VISOR_ACCESS_KEY: world.users.bob.accessKey,
      VISOR_SECRET_KEY: world.users.bob.secretKey,
    };
    const admin = world.client('admin');
    eastRun = ((await admin.postJson('/targets/east/sync?wait=true')) as { run: { id: string } }).run.id;
    await admin.postJson('/targets/west/sync?wait=true');
  }, 60_000);
  afterAll(async () => world?.close());

  const visor = (...args: string[]) => runVisorAsync(args, { cwd: world.dir, env: { ...env, HOME: world.dir } });

  it('lists recent runs as a table and as JSON, filtered by cloud', async () => {
    const table = await visor('runs');
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^RUN\s+CLOUD\s+STATUS\s+TRIGGER\s+STARTED\s+TIME\s+BYTES\s+TASKS\s+DRIFT/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[1])).toEqual(['west', 'east']);
    expect(table.stdout).toContain('5 created');
    const json = await visor('runs', '--target', 'east', '--json');
    const runs = JSON.parse(json.stdout) as { id: string; status: string; bytes: number }[];
    expect(runs).toEqual([expect.objectContaining({ id: eastRun, status: 'succeeded', bytes: 5 * 64 * 1024 })]);
  });

  it("shows one run's tasks", async () => {
    const detail = await visor('runs', eastRun);
    expect(detail.code).toBe(0);
    expect(detail.stdout).toMatch(/^east\s+succeeded/);
    expect(detail.stdout).toMatch(/^create\s+created\s+ubuntu-24\.04\s/m);
    const json = JSON.parse((await visor('runs', eastRun, '--json')).stdout) as { actions: unknown[] };
    expect(json.actions).toHaveLength(5);
  });

  it('says which clouds hold an image, with native ids, and where it is absent', async () => {
    const ubuntu = world.images.public[0]!;
    const shown = await visor('where', ubuntu.id);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`ubuntu-24.04 (${ubuntu.id})`);
    expect(shown.stdout).toMatch(/^east\s+in-sync\s+\S+\s+ubuntu-24\.04\s/m);
    const debian = JSON.parse((await visor('where', world.images.public[1]!.id, '--json')).stdout) as {
      clouds: { target: string; status: string; copies: { nativeId: string }[] }[];
    };
    expect(debian.clouds.map((c) => [c.target, c.status])).toEqual([
      ['east', 'in-sync'],
      ['west', 'absent'],
    ]);
    expect(debian.clouds[0]!.copies[0]!.nativeId).toMatch(/\S/);
  });

  it("reports another user's private image, an unknown run and a bad limit as clear errors", async () => {
    const hidden = await visor('where', world.images.carols.id);
    expect(hidden.code).not.toBe(0);
    expect(hidden.stderr).toContain(`no image with id ${world.images.carols.id}`);
    const unknown = await visor('runs', '00000000-0000-4000-8000-00000000dead');
    expect(unknown.stderr).toContain('no run with id');
    const bad = await visor('runs', '--limit', 'lots');
    expect(bad.stderr).toContain('limit must be a whole number');
    for (const result of [hidden, unknown, bad]) expect(result.stderr).not.toMatch(stackLine);
  });

  it('retries only the failed images with visor trigger --failed (admin), refusing when nothing failed', async () => {
    const admin = {
      ...env,
      VISOR_ACCESS_KEY: world.users.admin.accessKey,
      VISOR_SECRET_KEY: world.users.admin.secretKey,
    };
    const asAdmin = (...args: string[]) => runVisorAsync(args, { cwd: world.dir, env: { ...admin, HOME: world.dir } });
    const nothing = await asAdmin('trigger', 'east', '--failed');
    expect(nothing.code).not.toBe(0);
    expect(nothing.stderr).toContain("nothing failed in east's last run");
    const asBob = await visor('trigger', 'east', '--failed');
    expect(asBob.stderr).toContain('only an admin may retry failed tasks');
    const misuse = await asAdmin('trigger', 'east', '--image', world.images.public[0]!.id);
    expect(misuse.stderr).toContain('--image goes with --failed');
    const bytes = randomBytes(32 * 1024);
    const meta = { name: 'zz-cli-retry', architecture: 'x86_64', access: 'public' };
    const added = await world.client('admin').add(meta, { stream: Readable.from([bytes]), size: bytes.length });
    const id = String(added['_id']);
    const restore = await corruptStoredImage(world.agent.server.catalog, id);
    const partial = await asAdmin('trigger', 'east', '--wait');
    // Failed, or partial when the run also caught up on something else (digests recorded since the first run).
    expect(partial.stdout).toMatch(/^\[east\] (failed|partial)$/m);
    expect(partial.code).not.toBe(0);
    await restore();
    const retried = await asAdmin('trigger', 'east', '--failed', '--wait', '--json');
    expect(retried.code).toBe(0);
    const body = JSON.parse(retried.stdout) as { images: string[]; run: { trigger: string; status: string } };
    expect(body).toMatchObject({
      images: [id],
      run: { trigger: 'retry', status: 'succeeded' },
    });
    for (const result of [nothing, asBob, misuse]) expect(result.stderr).not.toMatch(stackLine);
  });
});
