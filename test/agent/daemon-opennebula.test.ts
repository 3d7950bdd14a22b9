import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import { AgentDaemon } from '../../agent/daemon.js';
import { sealingBox } from '../../agent/serve.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { silentLogger } from '../../core/logging/logger.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';

/**
 * `visor agent` end to end against the OpenNebula double: scheduled runs, manual triggers, the
 * ERROR path, the USED rule, no overlapping runs, status/metrics/health, reload and stop.
 */
async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('visor agent with an OpenNebula cloud', () => {
  let one: OpenNebulaDouble;
  let dir: string;
  let config: string;
  let daemon: AgentDaemon;
  let admin: NewCredentials;
  let user: NewCredentials;
  let client: VisorClient;

  const writeConfig = (naming: string, schedule = '*/2 * * * * *') =>
    writeFile(
      config,
      `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: agent-one, leaseSeconds: 10 }
clouds:
  one:
    adapter: opennebula
    options:
      endpoint: ${one.endpoint}
      username: oneadmin
      password: opennebula
      datastore: default
      pollInterval: 0.05
      timeouts: { request: 5 }
    sync:
      schedule: '${schedule}'
      # Runs come from the schedule and the tests' triggers only (change triggers: change-triggers.test.ts).
      triggers: { onChange: false }
      selector: { access: [public, private] }
      naming: '${naming}'
      retire: { mode: delete }
      retries: { attempts: 1 }
      concurrency: 1
      timeouts: { action: 30s }
`,
    );

  beforeAll(async () => {
    one = await startOpenNebulaDouble();
    dir = await mkdtemp(join(tmpdir(), 'visor-agent-one-'));
    config = join(dir, 'visor.yaml');
    await writeConfig('{name}');
    // Users first (the agent serves the API with auth on).
    const setup = await openRuntime({ configFile: config, env: {}, logger: silentLogger });
    const catalog = await setup.catalog();
    const box = await sealingBox(setup);
    admin = await addUser(catalog.users, box, 'admin', true);
    user = await addUser(catalog.users, box, 'user', false);
    await setup.close();
    daemon = new AgentDaemon({ configFile: config, env: {}, logger: silentLogger, port: 0 });
    await daemon.start();
    client = new VisorClient({
      url: daemon.url,
      accessKey: admin.accessKey,
      secretKey: admin.secretKey,
      source: 'test',
    });
  }, 60_000);
  afterAll(async () => {
    await daemon?.stop(5_000);
    if (one) await expectValidDocuments([one]);
    await one?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const add = (name: string, size = 256 * 1024) => {
    const data = randomBytes(size);
    return client.add(
      { name, architecture: 'x86_64', format: 'raw', access: 'public' },
      { stream: Readable.from([data]), size },
    );
  };
  const marked = (name: string) =>
    one.images().filter((i) => i.name === name && i.template.get('VISOR_AGENT') === 'agent-one');

  it('syncs new catalog images on its schedule; ONE fetches them from the agent by one-time URL', async () => {
    const image = await add('scheduled-1');
    const copy = await waitFor('the scheduled run to create the image', async () =>
      marked('scheduled-1').find((i) => i.state === 1),
    );
    expect(copy.template.get('VISOR_IMAGE_ID')).toBe(image['_id']);
    const status = await waitFor('a status with drift 0', async () => {
      const s = (await client.getJson('/status')) as {
        targets: { name: string; drift?: number; lastRun?: { status: string; trigger: string }; nextRun?: string }[];
      };
      const t = s.targets[0];
      return t?.drift === 0 && t.lastRun?.status === 'succeeded' ? t : undefined;
    });
    expect(status).toMatchObject({ name: 'one', lastRun: { trigger: 'schedule' } });
    // The dashboard's sharing data: OpenNebula shares nothing here, and says so with zeros, not absence.
    expect(status).toMatchObject({ sharing: { shared: 0, pending: [], unmapped: [] } });
    expect(Date.parse(status.nextRun!)).toBeGreaterThan(Date.now() - 1000);
    // From here on, runs happen when the tests ask: a far-away schedule (and a reload to get it).
    await writeConfig('{name}', '0 0 1 1 *');
    await daemon.reload();
    await Promise.all((await daemon.status()).filter((t) => t.running).map(() => daemon.trigger('one')));
  });

  it('reports the ERROR path: the failed copy is deleted and the run is partial', async () => {
    // One import at a time (concurrency 1): whichever is LOCKED now is the one being fetched.
    one.failImports((path) =>
      path.includes('/agent/content/') && one.images().some((i) => i.name === 'will-fail' && i.state === 4)
        ? 'Error copying image: unreachable'
        : undefined,
    );
    await add('will-fail');
    await add('will-work');
    const run = (await client.postJson('/targets/one/sync?wait=true')) as {
      run: { status: string; actions: { name: string; result: string; error?: { message: string } }[] };
    };
    one.failImports(undefined);
    expect(run.run.actions.find((a) => a.name === 'will-fail')).toMatchObject({
      result: 'failed',
      error: { message: expect.stringMatching(/unreachable/) },
    });
    expect(run.run.actions.find((a) => a.name === 'will-work')).toMatchObject({ result: 'created' });
    expect(run.run.status).toBe('partial');
    expect(one.images().filter((i) => i.name === 'will-fail' && i.state === 5)).toEqual([]);
    await client.postJson('/targets/one/sync?wait=true');
    expect(marked('will-fail').filter((i) => i.state === 1)).toHaveLength(1);
    expect(marked('will-work').filter((i) => i.state === 1)).toHaveLength(1);
  });

  it('never deletes an image while it is USED; deletes it once it is free', async () => {
    const image = await add('in-use');
    await client.postJson('/targets/one/sync?wait=true');
    const copy = marked('in-use').find((i) => i.state === 1)!;
    expect(copy).toBeDefined();
    one.attachVm(copy.id, 42);
    await client.delete(String(image['_id']));
    const run = (await client.postJson('/targets/one/sync?wait=true')) as { run: { actions: unknown[] } };
    // Deferred, not done: the run records why (visor status, the dashboard).
    const mine = run.run.actions.filter((a) => (a as { nativeId?: string }).nativeId === String(copy.id));
    expect(mine).toEqual([expect.objectContaining({ result: 'skipped', detail: expect.stringMatching(/in use/) })]);
    expect(one.image(copy.id)?.state).toBe(2);
    one.detachVm(copy.id, 42);
    await client.postJson('/targets/one/sync?wait=true');
    await waitFor(
      'the copy to be deleted',
      async () => one.image(copy.id) === undefined || one.image(copy.id)?.state === 7,
    );
  });

  it('lets only admins trigger a sync, and joins a run that is going on instead of starting another', async () => {
    const plain = new VisorClient({
      url: daemon.url,
      accessKey: user.accessKey,
      secretKey: user.secretKey,
      source: 'test',
    });
    await expect(plain.postJson('/targets/one/sync')).rejects.toMatchObject({ kind: 'forbidden' });
    one.holdImports(true);
    await add('held');
    const first = daemon.trigger('one');
    const second = daemon.trigger('one');
    expect(second).toBe(first);
    one.holdImports(false);
    const [a, b] = await Promise.all([first, second]);
    expect(a.id).toBe(b.id);
    await expect(client.postJson('/targets/nowhere/sync?wait=true')).rejects.toMatchObject({ kind: 'notFound' });
  });

  it('serves /health and Prometheus /metrics', async () => {
    const health = await fetch(`${daemon.url}/health`);
    expect(await health.json()).toEqual({ status: 'ok' });
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(metrics).toMatch(/visor_sync_runs_total\{target="one",status="succeeded"\} \d+/);
    expect(metrics).toMatch(/visor_sync_actions_total\{target="one",action="create",result="created"\} \d+/);
    expect(metrics).toMatch(/visor_sync_drift\{target="one"\} \d+/);
  });

  it('reloads its configuration (SIGHUP) and applies the new naming on the next run', async () => {
    await writeConfig('site-{name}');
    await daemon.reload();
    await waitFor('images renamed by the new naming template (on the schedule)', async () =>
      one.images().some((i) => i.name === 'site-scheduled-1'),
    );
    // A broken file keeps the running configuration.
    await writeFile(config, 'clouds: [this is not right\n');
    await expect(daemon.reload()).rejects.toMatchObject({ kind: 'config' });
    expect((await daemon.status()).map((t) => t.name)).toEqual(['one']);
  });

  it('stops gracefully: an import still going on is abandoned cleanly, nothing left LOCKED', async () => {
    await writeConfig('site-{name}', '0 0 1 1 *');
    await daemon.reload();
    one.holdImports(true);
    await add('abandoned');
    const run = daemon.trigger('one');
    await waitFor('the import to start', async () =>
      one.images().some((i) => i.name === 'site-abandoned' && i.state === 4),
    );
    const stopping = daemon.stop(500);
    // The grace period passes with the import still held: the run is aborted and cleans up.
    await new Promise((r) => setTimeout(r, 1000));
    one.holdImports(false);
    await stopping;
    const record = await run;
    expect(record.status).not.toBe('succeeded');
    expect(record.actions).toEqual([expect.objectContaining({ name: 'site-abandoned', result: 'failed' })]);
    expect(one.images().filter((i) => i.name === 'site-abandoned' && i.state === 4)).toEqual([]);
  });
});
