import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresCatalog } from '../../core/catalog/postgresql/postgresql-catalog.js';
import { latestVersion, migrate, migrations } from '../../core/catalog/postgresql/postgresql-migrations.js';
import { isVisorError } from '../../core/errors.js';
import { requirePeer } from '../peers/index.js';
import { adminQuery, createTestDatabase, databaseUrl, dropTestDatabase } from '../peers/postgresql.js';
import { runVisorAsync, stackLine } from '../support/cli.js';
import { makeImage } from '../support/images.js';

/**
 * The PostgreSQL catalog's schema migrations (forward only, under an advisory lock, each in the
 * transaction that records it), its bounded pool and its timeouts, against the real server.
 */
const { peer, skip } = await requirePeer('postgresql');
let database = '';
let url = '';
let dir = '';
beforeAll(async () => {
  if (!peer) return;
  database = await createTestDatabase(peer, 'migrations');
  url = databaseUrl(peer, database);
  dir = await mkdtemp(join(tmpdir(), 'visor-pg-migrate-'));
}, 60_000);
afterAll(async () => {
  if (peer && database) await dropTestDatabase(peer, database);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const fresh = () => `m_${randomBytes(5).toString('hex')}`;
const applied = async (schema: string) =>
  (await adminQuery(peer!, `SELECT version, name FROM ${schema}.schema_migrations ORDER BY version`, database)).rows;
const pool = () => new pg.Pool({ connectionString: url, max: 2 });

describe('postgresql catalog: schema migrations', () => {
  it('applies every migration exactly once when many servers start on a new schema at the same moment', async (ctx) => {
    if (skip) ctx.skip(skip);
    const schema = fresh();
    const catalogs = Array.from({ length: 6 }, () => new PostgresCatalog({ url, schema, poolSize: 2 }));
    try {
      await Promise.all(catalogs.map((c) => c.init()));
      expect(await applied(schema)).toEqual(migrations.map((m) => ({ version: m.version, name: m.name })));
      await catalogs[0]!.images.create(makeImage({ name: 'after-the-race' }));
      await expect(catalogs[5]!.images.count()).resolves.toBe(1);
    } finally {
      await Promise.all(catalogs.map((c) => c.close()));
    }
  });

  it('brings an older schema up to date at start, keeping its records', async (ctx) => {
    if (skip) ctx.skip(skip);
    const schema = fresh();
    const p = pool();
    try {
      await migrate(p, schema, 'test', 1);
    } finally {
      await p.end();
    }
    const image = makeImage({ name: 'from-version-1' });
    await adminQuery(
      peer!,
      `INSERT INTO ${schema}.images (id, revision, body, doc) ` +
        `VALUES ('${image.id}', 1, '${JSON.stringify(image)}', '${JSON.stringify(image)}')`,
      database,
    );
    expect((await applied(schema)).map((r) => r.version)).toEqual([1]);
    const catalog = new PostgresCatalog({ url, schema });
    try {
      await catalog.init();
      expect((await applied(schema)).map((r) => r.version)).toEqual(migrations.map((m) => m.version));
      await expect(catalog.images.get(image.id)).resolves.toEqual(image);
      await expect(catalog.leases.acquire('target:x', 'me', 1000)).resolves.toMatchObject({ holder: 'me' });
    } finally {
      await catalog.close();
    }
  });

  it('rolls a failing migration back whole: nothing of it stays, the version is unchanged', async (ctx) => {
    if (skip) ctx.skip(skip);
    const schema = fresh();
    const p = pool();
    try {
      await migrate(p, schema, 'test', 1);
      // Something in the way of version 2 (it creates `runs`, then `leases`).
      await p.query(`CREATE TABLE ${schema}.leases (x int)`);
      const error = await migrate(p, schema, 'test').catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe('42P07');
      expect((await applied(schema)).map((r) => r.version)).toEqual([1]);
      const runs = await p.query('SELECT to_regclass($1) AS t', [`${schema}.runs`]);
      expect(runs.rows[0].t).toBeNull();
    } finally {
      await p.end();
    }
  });

  it('`visor catalog migrate` says what it applied, then that there is nothing to do', async (ctx) => {
    if (skip) ctx.skip(skip);
    const schema = fresh();
    const p = pool();
    try {
      await migrate(p, schema, 'test', 1);
    } finally {
      await p.end();
    }
    const config = join(dir, `${schema}.yaml`);
    // The password apart from the URL, from the environment, as a deployment would give it.
    const noPassword = url.replace(`:${peer!.password}@`, '@');
    const password = '"${VISOR_PG_PASSWORD}"';
    const options = `{ url: "${noPassword}", password: ${password}, schema: ${schema}, migrations: manual }`;
    await writeFile(config, `dataDir: ${join(dir, schema)}\ncatalog: { type: postgresql, options: ${options} }\n`);
    const env = { VISOR_PG_PASSWORD: peer!.password };
    // Manual migrations: the server refuses a schema that is behind, with what to do.
    const refused = await runVisorAsync(['users', 'list', '-c', config], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(
      new RegExp(
        `^visor: PostgreSQL catalog postgresql://${peer!.user}@127\\.0\\.0\\.1:${peer!.port}/${database} ` +
          `\\(schema ${schema}\\) has schema version 1, this visor needs ${latestVersion}: ` +
          'run `visor catalog migrate -c CONFIG`',
      ),
    );
    const first = await runVisorAsync(['catalog', 'migrate', '-c', config], { env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`schema version 1 -> ${latestVersion}`);
    for (const m of migrations.slice(1)) expect(first.stdout).toContain(`${m.version}: ${m.name}`);
    const again = await runVisorAsync(['catalog', 'migrate', '-c', config, '--json'], { env });
    expect(JSON.parse(again.stdout)).toMatchObject({
      catalog: 'postgresql',
      from: latestVersion,
      to: latestVersion,
      applied: [],
    });
    const listed = await runVisorAsync(['users', 'list', '-c', config, '--json'], { env });
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([]);
    expect(`${first.stdout}${first.stderr}${refused.stderr}`).not.toContain(peer!.password);
    expect(refused.stderr).not.toMatch(stackLine);
  });
});

describe('postgresql catalog: a user with rights on its own schema only', () => {
  it('migrates and works in a schema the DBA made for it; elsewhere it is told what to grant', async (ctx) => {
    if (skip) ctx.skip(skip);
    const role = `visor_${randomBytes(4).toString('hex')}`;
    const schema = fresh();
    const password = randomBytes(8).toString('hex');
    await adminQuery(peer!, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    await adminQuery(peer!, `CREATE SCHEMA ${schema} AUTHORIZATION ${role}`, database);
    const asRole = (s: string) =>
      new PostgresCatalog({ url: url.replace(`${peer!.user}:${peer!.password}@`, `${role}@`), password, schema: s });
    const own = asRole(schema);
    try {
      await own.init();
      await own.images.create(makeImage({ name: 'limited' }));
      await expect(own.images.count()).resolves.toBe(1);
      const elsewhere = asRole(fresh());
      const error = await elsewhere.init().catch((e: unknown) => e);
      expect(isVisorError(error, 'config'), String(error)).toBe(true);
      const told = /permission denied for database .*; grant the catalog's user the rights/;
      expect((error as Error).message).toMatch(told);
    } finally {
      await own.close();
      await adminQuery(peer!, `DROP SCHEMA ${schema} CASCADE`, database);
      await adminQuery(peer!, `DROP ROLE ${role}`);
    }
  });
});

describe('postgresql catalog: connections', () => {
  it('connects over a unix socket (a URL without a host), to the same catalog as over TCP', async (ctx) => {
    if (skip) ctx.skip(skip);
    const schema = fresh();
    const socketUrl = `postgresql://${peer!.user}@/${database}?host=${peer!.socketDir}&port=${peer!.port}`;
    const overSocket = new PostgresCatalog({ url: socketUrl, password: peer!.password, schema });
    const overTcp = new PostgresCatalog({ url, schema });
    try {
      await overSocket.init();
      const where = `postgresql://${peer!.user}@${peer!.socketDir}:${peer!.port}/${database} (schema ${schema})`;
      expect(overSocket.where).toBe(where);
      const image = await overSocket.images.create(makeImage({ name: 'via-socket' }));
      await overTcp.init();
      await expect(overTcp.images.get(image.id)).resolves.toEqual(image);
    } finally {
      await overSocket.close();
      await overTcp.close();
    }
  });

  it('opens at most poolSize connections; a statement stuck behind a lock ends as a timeout', async (ctx) => {
    if (skip) ctx.skip(skip);
    const schema = fresh();
    const catalog = new PostgresCatalog({ url, schema, poolSize: 2, statementTimeoutMs: 1500 });
    await catalog.init();
    const image = await catalog.images.create(makeImage());
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE ${schema}.images IN ACCESS EXCLUSIVE MODE`);
      const started = Date.now();
      const reads = Array.from({ length: 6 }, () =>
        catalog.images.find(image.id).then(
          () => 'read',
          (e: unknown) => e,
        ),
      );
      await new Promise((r) => setTimeout(r, 500));
      const open = await adminQuery(
        peer!,
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = '${database}' AND application_name = 'visor'`,
      );
      expect(open.rows[0].n).toBe(2);
      const results = await Promise.all(reads);
      for (const result of results) {
        expect(isVisorError(result, 'timeout'), String(result)).toBe(true);
        expect((result as Error).message).toMatch(
          /^PostgreSQL catalog .*: a statement took longer than catalog\.options\.statementTimeoutSeconds/,
        );
      }
      // Two at a time, each waiting out its timeout: three rounds.
      expect(Date.now() - started).toBeGreaterThanOrEqual(3 * 1500 - 200);
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    await expect(catalog.images.get(image.id)).resolves.toEqual(image);
    await catalog.close();
  });
});
