import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDaemon } from '../../agent/daemon.js';
import type { RunRecord } from '../../core/catalog/port.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { memoryPlugin } from '../../core/iaas/memory/index.js';
import { silentLogger } from '../../core/logging/logger.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `visor agent` with a schedule that will not come during the test (1 January): every run here
 * is one a catalog change started. The images are written through the HTTP API, and through a
 * second connection to the catalog file (what another process does): the agent learns of both
 * from the catalog's change feed alone.
 */
describe('visor agent: catalog changes wake the clouds they concern, debounced', () => {
  let dir: string;
  let daemon: AgentDaemon;
  let other: SqliteCatalog;
  const cloud = `i20b-change-${process.pid}`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'visor-change-triggers-'));
    const config = join(dir, 'visor.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${join(dir, 'data')}`,
        'server:',
        '  auth:',
        '    enabled: false',
        'clouds:',
        '  mem:',
        '    adapter: memory',
        '    options:',
        `      cloud: ${cloud}`,
        '    sync:',
        '      schedule: "0 0 1 1 *"',
        '      selector:',
        '        names: ["wanted-*"]',
        '      triggers: { onChange: true, debounce: 2s, maxDelay: 10s }',
        '',
      ].join('\n'),
    );
    daemon = new AgentDaemon({
      configFile: config,
      env: {},
      logger: silentLogger,
      plugins: [memoryPlugin],
      host: '127.0.0.1',
      port: 0,
    });
    await daemon.start();
    other = new SqliteCatalog({ path: join(dir, 'data', 'catalog.db') });
    await other.init();
  }, 60_000);

  afterAll(async () => {
    await other?.close();
    await daemon?.stop(5_000);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function upload(name: string): Promise<string> {
    const data = randomBytes(4096);
    const response = await fetch(`${daemon.url}/images`, {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'x-image-meta-name': name,
        'x-image-meta-architecture': 'x86_64',
        'x-image-meta-access': 'public',
        'x-image-meta-format': 'raw',
      },
      body: data,
    });
    expect(response.status).toBe(201);
    const body = (await response.json()) as { image: { _id: string } };
    return body.image._id;
  }

  const runs = () => daemon.server.catalog.runs.list({ target: 'mem', limit: 100 });

  /** Waits for a finished run the agent started after `since`, up to `ms`. */
  async function finishedRunAfter(known: number, ms: number): Promise<RunRecord | undefined> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const all = await runs();
      const fresh = all.slice(0, all.length - known).reverse();
      const done = fresh.find((r) => r.status !== 'running');
      if (done) return done;
      await sleep(100);
    }
    return undefined;
  }

  it('leaves the cloud alone for an image its selector does not pick', async () => {
    await upload('unrelated-image');
    // Longer than the debounce, a poll, and a run would take together.
    await sleep(5_000);
    expect(await runs()).toEqual([]);
  }, 20_000);

  it('syncs an image added through the API within seconds, recording why the run started', async () => {
    const id = await upload('wanted-one');
    const added = Date.now();
    const run = await finishedRunAfter(0, 15_000);
    const took = Date.now() - added;
    expect(run).toMatchObject({ trigger: 'change', status: 'succeeded' });
    expect(run!.actions.filter((a) => a.result !== 'unchanged').map((a) => [a.imageId, a.result])).toEqual([
      [id, 'created'],
    ]);
    // Debounce (2 s) + a poll (1 s) + the run: far from the schedule.
    expect(took).toBeLessThan(8_000);
    const plan = await daemon.plan('mem');
    expect(plan.actions.filter((a) => 'imageId' in a && a.imageId === id)).toEqual([]);
  }, 30_000);

  it('collapses a burst of 50 changes into one run', async () => {
    const before = (await runs()).length;
    const ids: string[] = [];
    for (let i = 0; i < 50; i += 10)
      ids.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => upload(`wanted-burst-${i + j}`)))));
    const run = await finishedRunAfter(before, 20_000);
    expect(run?.trigger).toBe('change');
    const created = run!.actions.filter((a) => a.result === 'created').map((a) => a.imageId);
    expect(created.sort()).toEqual([...ids].sort());
    // Nothing more comes of the burst.
    await sleep(5_000);
    expect((await runs()).length).toBe(before + 1);
  }, 60_000);

  it('wakes on a write another process makes to the catalog, and on a deprecation through the API', async () => {
    const id = await upload('wanted-renamed');
    const first = await finishedRunAfter((await runs()).length, 15_000);
    expect(first?.actions.find((a) => a.imageId === id)?.result).toBe('created');

    const known = (await runs()).length;
    const image = await other.images.get(id);
    await other.images.update(id, image.revision, { properties: { note: 'from elsewhere' } });
    const updated = await finishedRunAfter(known, 15_000);
    expect(updated?.trigger).toBe('change');
    expect(updated?.actions.find((a) => a.imageId === id)?.result).toBe('updated');

    const known2 = (await runs()).length;
    const response = await fetch(`${daemon.url}/images/${id}/deprecate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'obsolete' }),
    });
    expect(response.status).toBe(200);
    const retired = await finishedRunAfter(known2, 15_000);
    expect(retired?.trigger).toBe('change');
    expect(retired?.actions.find((a) => a.imageId === id || a.name === 'wanted-renamed')?.result).toMatch(
      /updated|retired/,
    );
  }, 60_000);
});
