import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latestVersion, migrate } from '../../core/catalog/postgresql/postgresql-migrations.js';
import { requirePeer } from '../peers/index.js';
import { adminQuery, createTestDatabase, databaseUrl, dropTestDatabase } from '../peers/postgresql.js';
import { repoRoot, stackLine, visorBin, type CliResult } from '../support/cli.js';

/**
 * A PostgreSQL catalog that cannot be used — the server is down, refuses the password, wants
 * one and gets none, the database is missing, the schema is older (with manual migrations) or
 * newer than this visor — stops `visor serve`, `visor agent`, `visor users` and
 * `visor catalog migrate` with one line that names the catalog (never its password) and says what
 * to do, exit 2 for configuration and 1 for an unavailable server, no stack, never listening.
 */
const { peer, skip } = await requirePeer('postgresql');
let database = '';
let dir = '';
let oldSchema = '';
let newSchema = '';
let downPort = 0;

beforeAll(async () => {
  if (!peer) return;
  database = await createTestDatabase(peer, 'bad_input');
  dir = await mkdtemp(join(tmpdir(), 'visor-pg-bad-'));
  const pool = new pg.Pool({ connectionString: databaseUrl(peer, database), max: 1 });
  try {
    oldSchema = `old_${randomBytes(4).toString('hex')}`;
    await migrate(pool, oldSchema, 'test', 1);
    newSchema = `new_${randomBytes(4).toString('hex')}`;
    await migrate(pool, newSchema, 'test');
    await pool.query(
      `INSERT INTO ${newSchema}.schema_migrations (version, name) VALUES (${latestVersion + 7}, 'from the future')`,
    );
  } finally {
    await pool.end();
  }
  // A port where nothing listens: taken, then given back.
  downPort = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}, 60_000);
afterAll(async () => {
  if (peer && database) await dropTestDatabase(peer, database);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The built CLI, killed if it still runs after `ms`: a catalog that cannot be used must stop start-up. */
function visor(args: string[], env: Record<string, string>, ms = 30_000): Promise<CliResult & { timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [visorBin, ...args], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'], ...env },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, ms);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

interface Case {
  name: string;
  options: () => Record<string, string | number>;
  code: number;
  says: () => RegExp;
}

const at = (schema = 'visor', port = peer!.port, db = database) =>
  `postgresql://${peer!.user}@127\\.0\\.0\\.1:${port}/${db} \\(schema ${schema}\\)`;
const url = (port = peer?.port, db = database) => `postgresql://${peer!.user}@127.0.0.1:${port}/${db}`;

const cases: Case[] = [
  {
    name: 'the server is down',
    options: () => ({ url: url(downPort), password: peer!.password, connectTimeoutSeconds: 5 }),
    code: 1,
    says: () =>
      new RegExp(
        `^visor: PostgreSQL catalog ${at('visor', downPort)}: cannot connect \\(connect ECONNREFUSED [^)]+\\); ` +
          'start PostgreSQL or fix catalog\\.options\\.url$',
      ),
  },
  {
    name: 'the password is refused',
    options: () => ({ url: url(), password: 'not-the-password' }),
    code: 2,
    says: () =>
      new RegExp(
        `^visor: PostgreSQL catalog ${at()}: password authentication failed for user "${peer!.user}"; ` +
          'check the user and password',
      ),
  },
  {
    name: 'no password is given',
    options: () => ({ url: url() }),
    code: 2,
    says: () =>
      new RegExp(
        `^visor: PostgreSQL catalog ${at()}: the server asks for a password and none was usable .*; ` +
          'set catalog\\.options\\.password$',
      ),
  },
  {
    name: 'the database does not exist',
    options: () => ({ url: url(peer!.port, 'no_such_db'), password: peer!.password }),
    code: 2,
    says: () =>
      new RegExp(
        `^visor: PostgreSQL catalog ${at('visor', peer!.port, 'no_such_db')}: ` +
          'database "no_such_db" does not exist; create it',
      ),
  },
  {
    name: 'the schema is older and migrations are manual',
    options: () => ({ url: url(), password: peer!.password, schema: oldSchema, migrations: 'manual' }),
    code: 2,
    says: () =>
      new RegExp(
        `^visor: PostgreSQL catalog ${at(oldSchema)} has schema version 1, this visor needs ${latestVersion}: ` +
          'run `visor catalog migrate -c CONFIG`',
      ),
  },
  {
    name: 'the schema is newer than this visor',
    options: () => ({ url: url(), password: peer!.password, schema: newSchema }),
    code: 2,
    says: () =>
      new RegExp(
        `^visor: PostgreSQL catalog ${at(newSchema)} has schema version ${latestVersion + 7}, ` +
          `newer than this visor knows \\(${latestVersion}\\): upgrade visor`,
      ),
  },
];

const commands: [string, (config: string) => string[]][] = [
  ['serve', (config) => ['serve', '-c', config, '--port', '0']],
  ['agent', (config) => ['agent', '-c', config, '--port', '0']],
  ['users list', (config) => ['users', 'list', '-c', config]],
  ['catalog migrate', (config) => ['catalog', 'migrate', '-c', config]],
];

describe('a PostgreSQL catalog that cannot be used', () => {
  for (const c of cases) {
    for (const [command, args] of commands) {
      // An older schema is what `catalog migrate` is for: it is tested succeeding in test/catalog.
      if (command === 'catalog migrate' && c.name.includes('older')) continue;
      it(`${c.name}: \`visor ${command}\` says so in one line and exits ${c.code}`, async (ctx) => {
        if (skip) ctx.skip(skip);
        const config = join(dir, `${randomBytes(4).toString('hex')}.yaml`);
        const options = JSON.stringify(c.options());
        await writeFile(
          config,
          `dataDir: ${join(dir, 'data')}\nlogging: { level: error }\n` +
            `catalog: { type: postgresql, options: ${options} }\n`,
        );
        const result = await visor(args(config), {});
        expect(result.timedOut, 'it must stop, never start serving').toBe(false);
        expect(result.stderr.trimEnd().split('\n'), result.stderr).toHaveLength(1);
        expect(result.stderr.trimEnd()).toMatch(c.says());
        expect(result.stderr).not.toMatch(stackLine);
        expect(`${result.stdout}${result.stderr}`).not.toContain(peer!.password);
        expect(result.code).toBe(c.code);
      });
    }
  }

  it('leaves an older schema as it was when refusing it', async (ctx) => {
    if (skip) ctx.skip(skip);
    const rows = (await adminQuery(peer!, `SELECT version FROM ${oldSchema}.schema_migrations`, database)).rows;
    expect(rows).toEqual([{ version: 1 }]);
  });
});
