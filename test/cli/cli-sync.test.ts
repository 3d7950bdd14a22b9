import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../../agent/session.js';
import { silentLogger } from '../../core/logging/logger.js';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import { runVisorAsync, stackLine } from '../support/cli.js';

/** `visor plan`, `sync`, `status` and `migrate` as users run them, against the OpenNebula double. */
describe('visor plan / sync / status / migrate', () => {
  let one: OpenNebulaDouble;
  let other: OpenNebulaDouble;
  let dir: string;
  let config: string;
  const visor = (args: string[]) => runVisorAsync([...args, '-c', config], { env: { HOME: dir } });

  beforeAll(async () => {
    one = await startOpenNebulaDouble();
    other = await startOpenNebulaDouble();
    dir = await mkdtemp(join(tmpdir(), 'visor-cli-sync-'));
    config = join(dir, 'visor.yaml');
    const cloud = (endpoint: string, extra = '') =>
      `
    adapter: opennebula
    options: { endpoint: '${endpoint}', username: oneadmin, password: ` +
      `opennebula, datastore: default, pollInterval: 0.05, timeouts: { request: 5 } }
    sync: { selector: { tags: [cli] }, retire: { mode: delete }, retries: { attempts: 1 }, concurrency: 1${extra} }`;
    await writeFile(
      config,
      `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: cli-agent }
clouds:
  one:${cloud(one.endpoint)}
  other:${cloud(other.endpoint, ', enabled: false')}
`,
    );
    const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    for (const name of ['alpha', 'beta']) {
      const image = await session.images.register(
        { name: 'cli', admin: true },
        { name, architecture: 'x86_64', diskFormat: 'raw', tags: ['cli'], access: 'public' },
      );
      await session.images.upload({ name: 'cli', admin: true }, image.id, Readable.from([randomBytes(128 * 1024)]), {
        size: 128 * 1024,
      });
    }
    await session.close();
  }, 60_000);
  afterAll(async () => {
    await expectValidDocuments([one, other]);
    await one?.close();
    await other?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('plans without changing anything', async () => {
    const plan = await visor(['plan', '--target', 'one', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    const body = JSON.parse(plan.stdout) as { plans: { target: string; actions: { kind: string; name: string }[] }[] };
    expect(body.plans[0]!.actions.map((a) => `${a.kind}:${a.name}`).sort()).toEqual(['create:alpha', 'create:beta']);
    expect(one.images()).toEqual([]);
    const table = await visor(['plan']);
    expect(table.stdout).toMatch(/^CLOUD\s+ACTION\s+IMAGE\s+DETAIL/m);
    expect(table.stdout).toMatch(/^one\s+create\s+alpha\s+upload$/m);
  });

  it('syncs (exit 0), serving the bytes to the cloud itself, and says what it did', async () => {
    const sync = await visor(['sync']);
    expect(sync.code, sync.stderr).toBe(0);
    expect(sync.stderr).toMatch(/\[one\] create alpha: created/);
    expect(sync.stdout).toMatch(/\[one\] succeeded — 2 created/);
    expect(
      one
        .images()
        .filter((i) => i.state === 1)
        .map((i) => i.name)
        .sort(),
    ).toEqual(['alpha', 'beta']);
    expect(other.images()).toEqual([]); // sync.enabled: false
    const again = await visor(['sync', '--json']);
    expect(JSON.parse(again.stdout).runs[0]).toMatchObject({ status: 'succeeded', actions: [], drift: 0 });
  });

  it('tells a partial failure (exit 3) and a failure (exit 1) from success', async () => {
    const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    for (const name of ['gamma', 'delta']) {
      const image = await session.images.register(
        { name: 'cli', admin: true },
        { name, architecture: 'x86_64', diskFormat: 'raw', tags: ['cli'], access: 'public' },
      );
      await session.images.upload({ name: 'cli', admin: true }, image.id, Readable.from([randomBytes(64 * 1024)]), {
        size: 64 * 1024,
      });
    }
    await session.close();
    one.failImports(() => (one.images().some((i) => i.name === 'gamma' && i.state === 4) ? 'copy failed' : undefined));
    const partial = await visor(['sync']);
    expect(partial.code).toBe(3);
    expect(partial.stderr).toMatch(/\[one\] create gamma: failed: unavailable: .*copy failed/);
    one.failImports(undefined);
    one.stall('one.imagepool.info', 60_000);
    const failed = await visor(['sync', '--target', 'one']);
    one.stall('one.imagepool.info', 0);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/\[one\] failed: .*listing one took longer|\[one\] failed/);
    expect(failed.stderr).not.toMatch(stackLine);
  }, 120_000);

  it('shows the status of every cloud from the run history', async () => {
    const status = await visor(['status', '--json']);
    const targets = (JSON.parse(status.stdout) as { targets: { name: string; lastRun?: { status: string } }[] })
      .targets;
    expect(targets.map((t) => t.name)).toEqual(['one', 'other']);
    expect(targets[0]!.lastRun?.status).toBe('failed');
    expect(targets[1]!.lastRun).toBeUndefined();
    const table = await visor(['status']);
    expect(table.stdout).toMatch(/^CLOUD\s+STATUS\s+FINISHED\s+LAST RUN\s+DRIFT\s+NEXT\s+ERROR/m);
    expect(table.stdout).toMatch(/^other\s+never run/m);
  });

  it('refuses to migrate from a cloud that cannot give images back, clearly', async () => {
    // OpenNebula in remote mode has no download (only a co-located agent can read SOURCE).
    const migrate = await visor(['migrate', '--from', 'one', '--to', 'other', '--name', 'alpha']);
    expect(migrate.code).toBe(3);
    expect(migrate.stderr).toMatch(/\[one\] import alpha: failed: unsupported: /);
    expect(migrate.stderr).not.toMatch(stackLine);
    expect(other.images()).toEqual([]);
  });

  it('refuses an unknown cloud clearly', async () => {
    const result = await visor(['sync', '--target', 'nowhere']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/no cloud named nowhere .*have: one, other/);
  });
});
