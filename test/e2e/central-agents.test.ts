import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import type { RunRecord } from '../../core/catalog/port.js';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import { requirePeer } from '../peers/index.js';
import { adminQuery, createTestDatabase, databaseUrl, dropTestDatabase } from '../peers/postgresql.js';
import { runVisorAsync } from '../support/cli.js';
import type { Credentials } from '../support/raw-http.js';
import { startVisorProcess, type VisorProcess } from '../support/visor-process.js';

/**
 * Many agents on one PostgreSQL catalog: three `visor agent` processes, each with its own cloud
 * (OpenNebula doubles), and one more cloud configured in the first two. That cloud is synced by
 * one agent at a time (its lease in the catalog); when the lease holder is killed (kill -9) in
 * the middle of an import, the other agent takes the cloud over once the lease has expired, and
 * its run leaves exactly one ready copy of every image: no duplicate, no partial, no orphan.
 */
const { peer, skip } = await requirePeer('postgresql');
const leaseSeconds = 10;

let database = '';
let dir = '';
const doubles: Record<'a' | 'b' | 'c' | 'shared', OpenNebulaDouble> = {} as never;
let agents: VisorProcess[] = [];
let admin: Credentials;
const env = () => ({ VISOR_PG_PASSWORD: peer!.password });

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 90_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const cloud = (one: OpenNebulaDouble) => `
    adapter: opennebula
    options:
      endpoint: ${one.endpoint}
      username: oneadmin
      password: opennebula
      datastore: default
      pollInterval: 0.05
      timeouts: { request: 10, readyWait: 60 }
    sync:
      schedule: '*/2 * * * * *'
      retire: { mode: delete }
      retries: { attempts: 1 }
      timeouts: { action: 60s }`;

beforeAll(async () => {
  if (!peer) return;
  database = await createTestDatabase(peer, 'agents');
  dir = await mkdtemp(join(tmpdir(), 'visor-agents-'));
  for (const name of ['a', 'b', 'c', 'shared'] as const) doubles[name] = await startOpenNebulaDouble();
  const url = databaseUrl(peer, database).replace(`:${peer.password}@`, '@');
  const config = async (name: string, clouds: Partial<Record<keyof typeof doubles, OpenNebulaDouble>>) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(
      file,
      `dataDir: ${join(dir, name)}
logging: { level: info, format: json }
catalog:
  type: postgresql
  options: { url: "${url}", password: "\${VISOR_PG_PASSWORD}", poolSize: 4 }
stores: { central: { type: file, options: { path: ${join(dir, 'images')} } } }
server: { auth: { keyFile: ${join(dir, 'credentials.key')} } }
# One agent id for the whole deployment: it is the ownership marker every copy carries.
agent: { id: central, leaseSeconds: ${leaseSeconds} }
clouds:${Object.entries(clouds)
        .map(([cloudName, one]) => `\n  ${cloudName}:${cloud(one!)}`)
        .join('')}
`,
    );
    return file;
  };
  const configs = [
    await config('agent-1', { a: doubles.a, shared: doubles.shared }),
    await config('agent-2', { b: doubles.b, shared: doubles.shared }),
    await config('agent-3', { c: doubles.c }),
  ];
  const added = await runVisorAsync(['users', 'add', 'admin', '--admin', '--json', '-c', configs[2]!], { env: env() });
  expect(added.code, added.stderr).toBe(0);
  admin = JSON.parse(added.stdout) as Credentials;
  agents = await Promise.all(configs.map((c) => startVisorProcess('agent', c, env())));
}, 180_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  const all = Object.values(doubles);
  if (all.length > 0) await expectValidDocuments(all);
  await Promise.all(all.map((d) => d.close()));
  if (database) await dropTestDatabase(peer!, database);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const client = () =>
  new VisorClient({ url: agents[2]!.url, accessKey: admin.accessKey, secretKey: admin.secretKey, source: 'test' });
const add = async (name: string, size: number) => {
  const data = randomBytes(size);
  const image = await client().add(
    { name, architecture: 'x86_64', format: 'raw', access: 'public' },
    { stream: Readable.from([data]), size },
  );
  return String(image['_id']);
};

/** Copies visor made in a double, by catalog image id (every state). */
const copies = (one: OpenNebulaDouble) => one.images().filter((i) => i.template.get('VISOR_AGENT') === 'central');

const readyCopies = (one: OpenNebulaDouble, id: string) =>
  copies(one).filter((i) => i.template.get('VISOR_IMAGE_ID') === id && i.state === 1).length;

/** Exactly one READY copy of each of `ids`, and nothing else of ours, in any state. */
const inStep = (one: OpenNebulaDouble, ids: readonly string[]) => {
  const ours = copies(one);
  return (
    ours.length === ids.length &&
    ids.every((id) => ours.filter((i) => i.template.get('VISOR_IMAGE_ID') === id && i.state === 1).length === 1)
  );
};

const runs = async (target: string): Promise<RunRecord[]> =>
  (await adminQuery(peer!, `SELECT body FROM visor.runs WHERE target = '${target}'`, database)).rows.map(
    (r) => JSON.parse(r.body as string) as RunRecord,
  );
const lease = async (name: string) =>
  (await adminQuery(peer!, `SELECT holder, expires_at FROM visor.leases WHERE name = '${name}'`, database)).rows[0] as
    | { holder: string; expires_at: string }
    | undefined;

/** Runs that did work (not the ones that found the lease taken), as time intervals. */
const worked = (all: RunRecord[]) => all.filter((r) => !/another agent/.test(r.error ?? '') && r.finishedAt);

describe('three agents on one PostgreSQL catalog', () => {
  const ids: string[] = [];

  it('sync every cloud; the cloud two agents share is synced by one of them at a time', async (ctx) => {
    if (skip) ctx.skip(skip);
    for (let i = 0; i < 3; i++) ids.push(await add(`image-${i}`, 512 * 1024 + i));
    for (const name of ['a', 'b', 'c', 'shared'] as const)
      await waitFor(`cloud ${name} in step`, () => inStep(doubles[name], ids));
    // Let the scheduler contend for the shared cloud for a while.
    await new Promise((r) => setTimeout(r, 6000));
    const shared = worked(await runs('shared')).sort((x, y) => x.startedAt.localeCompare(y.startedAt));
    expect(shared.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < shared.length; i++) {
      expect(
        shared[i]!.startedAt >= shared[i - 1]!.finishedAt!,
        `run ${shared[i]!.id} overlaps ${shared[i - 1]!.id}`,
      ).toBe(true);
    }
    // The other agent was there and was turned away while the lease was held.
    expect(
      (await runs('shared')).some((r) =>
        /another agent \(central\/\d+\/[0-9a-f]+\) is syncing shared/.test(r.error ?? ''),
      ),
    ).toBe(true);
    expect(inStep(doubles.shared, ids)).toBe(true);
  }, 240_000);

  it('after kill -9 of the lease holder mid-import, the other agent takes over: one ready copy each', async (ctx) => {
    if (skip) ctx.skip(skip);
    const shared = doubles.shared;
    shared.holdImports(true);
    ids.push(await add('mid-sync', 2 * 1024 * 1024));
    // The import has started in the shared cloud (LOCKED) and is held there.
    await waitFor('the import into the shared cloud to start', () =>
      copies(shared).some((i) => i.name === 'mid-sync' && i.state === 4),
    );
    const held = await lease('target:shared');
    expect(held).toBeDefined();
    const pid = Number(held!.holder.split('/')[1]);
    const victim = agents.find((a) => a.child.pid === pid)!;
    expect(victim, `lease holder ${held!.holder} is one of our agents`).toBeDefined();
    expect(agents.indexOf(victim)).toBeLessThan(2);
    await victim.kill();
    const killedAt = Date.now();
    // oned now fetches from an agent that is gone: the copy fails (a partial copy left behind).
    shared.holdImports(false);
    await waitFor("the killed agent's copy to fail", () =>
      copies(shared).some((i) => i.name === 'mid-sync' && i.state === 5),
    );
    // Nobody takes the cloud before the lease expires; then the survivor does.
    const takeover = await waitFor(
      'a run of the shared cloud by the survivor',
      async () => {
        const after = worked(await runs('shared')).filter(
          (r) => Date.parse(r.startedAt) > killedAt && r.status !== 'running',
        );
        return after.find((r) => r.actions.some((a) => a.name === 'mid-sync'));
      },
      120_000,
    );
    expect(Date.parse(takeover.startedAt)).toBeGreaterThanOrEqual(Number(held!.expires_at) - 1000);
    const newHolder = await lease('target:shared');
    expect(newHolder?.holder).not.toBe(held!.holder);
    await waitFor('the shared cloud back in step', () => inStep(shared, ids));
    // The killed agent's run is recorded as abandoned, not left running forever.
    const abandoned = (await runs('shared')).filter((r) => r.status === 'running' || /abandoned/.test(r.error ?? ''));
    expect(abandoned.every((r) => r.status === 'failed')).toBe(true);
    expect(abandoned.length).toBeGreaterThanOrEqual(1);
    // The next run of the survivor finds nothing to do: no duplicate, partial or orphaned copy.
    const settled = await waitFor('a later run with nothing to do', async () => {
      const later = worked(await runs('shared')).filter(
        (r) => Date.parse(r.startedAt) > Date.parse(takeover.finishedAt!),
      );
      return later.find((r) => r.status === 'succeeded' && r.actions.length === 0 && r.drift === 0);
    });
    expect(settled).toBeDefined();
    expect(inStep(shared, ids)).toBe(true);
    expect(shared.images().filter((i) => i.name.startsWith('mid-sync') && i.state !== 1)).toEqual([]);
    // The other clouds: each surviving agent keeps its own in step. The killed one's cloud waits for
    // it (it may or may not have got the new image before the kill), never holding two ready copies.
    const ownCloud = { a: agents[0]!, b: agents[1]!, c: agents[2]! };
    for (const [name, agent] of Object.entries(ownCloud) as ['a' | 'b' | 'c', VisorProcess][]) {
      if (agent !== victim) await waitFor(`cloud ${name} in step`, () => inStep(doubles[name], ids));
      else for (const id of ids) expect(readyCopies(doubles[name], id)).toBeLessThanOrEqual(1);
    }
  }, 300_000);
});
