import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirePeer } from '../peers/index.js';
import { pgCtl, postgresPeer, type PostgresPeer } from '../peers/postgresql-peer.js';
import { runVisorAsync } from '../support/cli.js';
import { rawRequest, type Credentials } from '../support/raw-http.js';
import { startVisorProcess, type VisorProcess } from '../support/visor-process.js';

/**
 * PostgreSQL going away under a running `visor serve` (a restart, a failover): requests answer
 * 503 while it is gone (the log says what is wrong), the process stays up (a pooled connection that dies
 * must not take it down), and it serves again as soon as PostgreSQL is back, without a restart.
 * A PostgreSQL of this test's own, since it is stopped: never the run's shared one.
 */
const { skip } = await requirePeer('postgresql');
let own: PostgresPeer | undefined;
let dir = '';
let server: VisorProcess | undefined;
let admin: Credentials;

beforeAll(async () => {
  if (skip) return;
  own = (await postgresPeer.start()).coordinates;
  dir = await mkdtemp(join(tmpdir(), 'visor-pg-outage-'));
  const config = join(dir, 'visor.yaml');
  const url = own.url.replace(`:${own.password}@`, '@');
  await writeFile(
    config,
    `dataDir: ${join(dir, 'data')}
logging: { level: warn, format: json }
catalog: { type: postgresql, options: { url: "${url}", password: "\${PGPW}", connectTimeoutSeconds: 2 } }
`,
  );
  const env = { PGPW: own.password };
  const added = await runVisorAsync(['users', 'add', 'admin', '--admin', '--json', '-c', config], { env });
  expect(added.code, added.stderr).toBe(0);
  admin = JSON.parse(added.stdout) as Credentials;
  server = await startVisorProcess('serve', config, { PGPW: own.password });
}, 120_000);

afterAll(async () => {
  await server?.stop();
  if (own) await postgresPeer.stop!(own);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const json = (body: unknown) => Buffer.from(JSON.stringify(body));
const list = () => rawRequest(server!.url, { method: 'GET', path: '/images', as: admin });

describe('PostgreSQL going away under a running visor serve', () => {
  it('answers 503 while it is gone, stays up, and serves again once it is back', async (ctx) => {
    if (skip) ctx.skip(skip);
    const created = await rawRequest(server!.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body: json({ image: { name: 'survives', architecture: 'x86_64' } }),
      as: admin,
    });
    expect(created.status).toBe(201);
    expect((await list()).status).toBe(200);

    await pgCtl(own!.baseDir, 'stop');
    const down = await list();
    expect(down.status).toBe(503);
    // Clients learn that a backend is down; the log says which and why (never the password).
    expect(down.json()).toMatchObject({ code: 503, message: expect.stringMatching(/^a backend is unavailable/) });
    const logged = /PostgreSQL catalog postgresql:\/\/\w+@127\.0\.0\.1:\d+\/postgres \(schema visor\)/;
    expect(server!.output()).toMatch(logged);
    expect(server!.output()).not.toContain(own!.password);
    expect(server!.child.exitCode).toBeNull();

    await pgCtl(own!.baseDir, 'start');
    const back = await list();
    expect(back.status).toBe(200);
    expect((back.json() as { images: { name: string }[] }).images.map((i) => i.name)).toEqual(['survives']);
    expect(server!.child.exitCode).toBeNull();
  }, 120_000);
});
