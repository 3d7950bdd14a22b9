import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVisorAsync, stackLine } from '../support/cli.js';
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
});
