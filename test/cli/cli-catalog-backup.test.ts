import { randomUUID } from 'node:crypto';
import { chmod, copyFile, mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Authenticator } from '../../agent/api/auth.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { integrityProblems } from '../../agent/cli/backup-file.js';
import type { SecretBox } from '../../core/auth/secret-box.js';
import { allImages } from '../../core/catalog/copy.js';
import type { Catalog, RunRecord } from '../../core/catalog/port.js';
import type { Image } from '../../core/image/model.js';
import { requirePeer } from '../peers/index.js';
import { catalogConfigs, type CatalogConfigs } from '../support/catalog-configs.js';
import { runVisorAsync, stackLine } from '../support/cli.js';
import { makeImage } from '../support/images.js';

/**
 * `visor catalog backup FILE` / `visor catalog restore FILE`: a snapshot taken while a writer
 * keeps adding images and runs must restore to a state the catalog really had (a prefix of the
 * writer's sequence), with every record kind equal and users able to sign in with the secrets
 * handed out before; bad files, newer formats and readable folders are refused, changing nothing.
 */
const { peer, skip } = await requirePeer('postgresql');
let configs: CatalogConfigs | undefined;
let dir = '';
const env = () => configs!.env();
const sqliteConfig = (name: string) => configs!.sqlite(name);
const withCatalog = <T>(config: string, fn: (catalog: Catalog, box: SecretBox) => Promise<T>) =>
  configs!.withCatalog(config, fn);

beforeAll(async () => {
  configs = await catalogConfigs('backup', peer);
  dir = configs.dir;
}, 60_000);
afterAll(async () => {
  await configs?.close();
});

const run = (n: number, target: string): RunRecord => ({
  id: `run-${target}-${String(n).padStart(6, '0')}`,
  target,
  agent: 'agent-1',
  trigger: 'schedule',
  dryRun: false,
  status: n % 2 ? 'succeeded' : 'partial',
  startedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
  actions: [{ action: 'create', result: 'created', name: `image-${n}` }],
});

interface Source {
  credentials: NewCredentials[];
  /** Every image ever written, in the order written: the seed first, then the writer's. */
  images: Image[];
  seeded: number;
}

/** A catalog with users (one admin), images of every access level, runs, state and a held lease. */
async function seed(config: string): Promise<Source> {
  return withCatalog(config, async (catalog, box) => {
    const credentials = [
      await addUser(catalog.users, box, 'admin', true),
      await addUser(catalog.users, box, 'alice', false),
    ];
    const alice = credentials[1]!.id;
    const images = [
      makeImage({ name: 'o\'brien "quoted" ☃', properties: { note: 'a\u0000b', emoji: '🐧' }, tags: ['lts'] }),
      makeImage({ name: 'private', access: 'private', owner: alice }),
      makeImage({ name: 'shared', access: 'shared', owner: alice, members: [credentials[0]!.id] }),
      ...Array.from({ length: 300 }, (_, i) => makeImage({ name: `seed-${i}`, size: i })),
    ];
    for (const image of images) await catalog.images.create(image);
    await catalog.images.update(images[0]!.id, 1, { name: 'renamed once' });
    images[0] = await catalog.images.get(images[0]!.id);
    for (let n = 0; n < 3; n++) await catalog.runs.create(run(n, 'prod'));
    await catalog.state.set('retired:prod:x', '2026-01-01T00:00:00.000Z');
    await catalog.state.set('artifact:y', { path: '/cache/y', bytes: 5 });
    await catalog.leases.acquire('target:prod', 'agent-1', 3_600_000);
    return { credentials, images, seeded: images.length };
  });
}

/**
 * Runs `visor catalog backup` while this process keeps writing (image N, then run N, ...) into
 * the same catalog; returns how many the writer had written when the backup started and ended.
 */
async function backupUnderLoad(config: string, file: string, source: Source) {
  return withCatalog(config, async (catalog) => {
    let stop = false;
    let written = 0;
    const writer = (async () => {
      while (!stop) {
        const image = makeImage({ name: `load-${String(written).padStart(6, '0')}` });
        await catalog.images.create(image);
        source.images.push(image);
        await catalog.runs.create(run(written, 'load'));
        written += 1;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    while (written < 5) await new Promise((r) => setTimeout(r, 5));
    const before = written;
    const result = await runVisorAsync(['catalog', 'backup', file, '-c', config, '--json'], { env: env() });
    const after = written;
    stop = true;
    await writer;
    return { result, before, after };
  });
}

/** The restored catalog is the source at one moment: the seed, a prefix of the writer's records, users that sign in. */
async function expectRestored(config: string, source: Source, bounds: { before: number; after: number }) {
  await withCatalog(config, async (catalog, box) => {
    const restored: Image[] = [];
    for await (const image of allImages(catalog)) restored.push(image);
    const loaded = restored.length - source.seeded;
    expect(loaded).toBeGreaterThanOrEqual(bounds.before);
    expect(loaded).toBeLessThanOrEqual(bounds.after + 1);
    const expected = source.images.slice(0, restored.length).sort((a, b) => (a.id < b.id ? -1 : 1));
    expect(restored).toEqual(expected);
    const runs = await catalog.runs.list({ target: 'load', limit: 1_000_000 });
    // Image N is written before run N: a moment's view has run N-1 at most, or run N too.
    expect([loaded - 1, loaded]).toContain(runs.length);
    expect(runs.map((r) => r.id).sort()).toEqual(Array.from({ length: runs.length }, (_, n) => run(n, 'load').id));
    expect((await catalog.runs.list({ target: 'prod' })).map((r) => r.id)).toEqual(
      [2, 1, 0].map((n) => run(n, 'prod').id),
    );
    expect(await catalog.state.list('')).toEqual(
      expect.arrayContaining([
        ['artifact:y', { path: '/cache/y', bytes: 5 }],
        ['retired:prod:x', '2026-01-01T00:00:00.000Z'],
      ]),
    );
    // Leases belong to the processes running on the source: not restored.
    await expect(catalog.leases.get('target:prod')).resolves.toBeUndefined();
    const auth = new Authenticator({ users: catalog.users, replays: catalog.replays, box, clockSkewSeconds: 300 });
    for (const c of source.credentials) {
      await expect(auth.checkKeys(c.accessKey, c.secretKey)).resolves.toMatchObject({ id: c.id, name: c.name });
    }
    await expect(auth.checkKeys(source.credentials[0]!.accessKey, 'wrong')).rejects.toThrow(/wrong access key/);
  });
}

const restore = (file: string, config: string, ...more: string[]) =>
  runVisorAsync(['catalog', 'restore', file, '-c', config, '--json', ...more], { env: env() });

describe('visor catalog backup / restore (SQLite)', () => {
  let source: Source;
  let config: string;
  let backups: string;
  let file: string;

  beforeAll(async () => {
    config = await sqliteConfig('sqlite-source');
    source = await seed(config);
    backups = join(dir, 'backups');
    await mkdir(backups, { mode: 0o700 });
    file = join(backups, 'sqlite.visor');
  }, 120_000);

  it('backs up under write load and restores a moment of the catalog, users signing in', async () => {
    const { result, before, after } = await backupUnderLoad(config, file, source);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(after).toBeGreaterThan(before);
    const report = JSON.parse(result.stdout) as { records: Record<string, number>; snapshot: boolean };
    expect(report.snapshot).toBe(true);
    expect(report.records['users']).toBe(2);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // One file: no partial file, no log beside it.
    expect((await readdir(backups)).sort()).toEqual(['sqlite.visor']);
    expect(await readFile8(file)).not.toContain(source.credentials[0]!.secretKey);

    const target = await sqliteConfig('sqlite-restored');
    const restored = await restore(file, target);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect((JSON.parse(restored.stdout) as { records: Record<string, number> }).records).toEqual(report.records);
    // Neither command prints a secret: not a user's, not the key that opens them.
    const key = (await readFile8(join(dir, 'sqlite-source', 'credentials.key'))).trim();
    for (const output of [result.stdout, restored.stdout, restored.stderr]) {
      expect(output).not.toContain(source.credentials[0]!.secretKey);
      expect(output).not.toContain(key);
    }
    await expectRestored(target, source, { before, after });

    // Not into a catalog that holds records, unless --force (which replaces them).
    const again = await restore(file, target);
    expect(again.code).toBe(6);
    expect(again.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^visor: the sqlite catalog is not empty \(\d+ images, 2 users, .*add --force/),
    ]);
    await withCatalog(target, async (catalog) => void (await catalog.images.create(makeImage({ name: 'extra' }))));
    const forced = await restore(file, target, '--force');
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ removed: expect.stringMatching(/images, 2 users/) });
    await expectRestored(target, source, { before, after });
  }, 180_000);

  it('refuses to write into a folder others can read or write, and never replaces a file', async () => {
    for (const mode of [0o755, 0o777, 0o704]) {
      const open = join(dir, `open-${mode.toString(8)}`);
      await mkdir(open);
      await chmod(open, mode);
      const result = await runVisorAsync(['catalog', 'backup', join(open, 'b.visor'), '-c', config]);
      expect(result.code).toBe(2);
      expect(result.stderr.trimEnd().split('\n')).toEqual([
        expect.stringMatching(
          /^visor: refusing to write the backup into .*open-\d+: the folder is (readable|writable) by/,
        ),
      ]);
      expect(await readdir(open)).toEqual([]);
    }
    const taken = join(dir, 'backups', 'taken.visor');
    await writeFile(taken, 'mine');
    const result = await runVisorAsync(['catalog', 'backup', taken, '-c', config]);
    expect(result.code).toBe(6);
    expect(result.stderr).toMatch(/exists already/);
    expect(await readFile8(taken)).toBe('mine');
  }, 60_000);

  /** A destination holding one image: a refused restore, even with --force, must leave it as it was. */
  async function refusedChangesNothing(bad: string, message: RegExp) {
    const target = await sqliteConfig(`target-${randomUUID().slice(0, 8)}`);
    const kept = makeImage({ name: 'kept' });
    await withCatalog(target, async (catalog) => void (await catalog.images.create(kept)));
    const result = await restore(bad, target, '--force');
    expect(result.code).toBe(2);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(message)]);
    expect(result.stderr).not.toMatch(stackLine);
    await withCatalog(target, async (catalog) => {
      const all: Image[] = [];
      for await (const image of allImages(catalog)) all.push(image);
      expect(all).toEqual([kept]);
      expect(await catalog.users.list()).toEqual([]);
    });
  }

  it('refuses a backup in a newer format than this visor reads', async () => {
    const newer = join(backups, 'newer.visor');
    await copyFile(file, newer);
    const db = new Database(newer);
    db.prepare(`UPDATE visor_backup SET value = '99' WHERE key = 'formatVersion'`).run();
    db.close();
    await refusedChangesNothing(
      newer,
      /^visor: .*newer\.visor was written by visor .* in backup format 99; this visor reads up to format 1/,
    );
  }, 60_000);

  it('refuses a damaged or altered file with a one-line error, changing nothing', async () => {
    const damaged = join(backups, 'damaged.visor');
    await copyFile(file, damaged);
    const size = (await stat(damaged)).size;
    const handle = await open(damaged, 'r+');
    await handle.write(Buffer.alloc(Math.floor(size / 3), 0xab), 0, Math.floor(size / 3), Math.floor(size / 3));
    await handle.close();
    await refusedChangesNothing(damaged, /^visor: .*damaged\.visor is not a usable visor catalog backup: /);

    // Sound as a database, but a record changed after the backup: its checksum gives it away.
    const altered = join(backups, 'altered.visor');
    await copyFile(file, altered);
    const db = new Database(altered);
    db.prepare(`UPDATE images SET doc = json_set(doc, '$.name', 'evil') WHERE id = ?`).run(source.images[1]!.id);
    db.close();
    await refusedChangesNothing(
      altered,
      /^visor: .*altered\.visor is not a usable .*: its images differ from its manifest/,
    );

    const text = join(backups, 'text.visor');
    await writeFile(text, 'not a backup\n');
    await refusedChangesNothing(text, /^visor: .*text\.visor is not a usable visor catalog backup: /);
    await refusedChangesNothing(join(backups, 'missing.visor'), /^visor: .*missing\.visor is not a usable/);
    // A live catalog is a sound SQLite file, but no backup.
    const live = join(dir, 'sqlite-source', 'catalog.db');
    await refusedChangesNothing(live, /^visor: .*catalog\.db is not a usable .*: it has no backup manifest/);
  }, 120_000);
});

async function readFile8(path: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(path, 'latin1');
}

describe('integrityProblems (a damaged backup in one line)', () => {
  it('names the first problem SQLite reports and counts the rest, one line however many there are', () => {
    // What SQLite reported for a backup with a third overwritten: one row, a problem per line.
    const report = [
      '*** in database main ***\nTree 16 page 98: btreeInitPage() returns error code 11\n' +
        Array.from({ length: 99 }, (_, i) => `Tree 23 page 51 cell ${i}: invalid page number 2880154539`).join('\n'),
    ];
    expect(integrityProblems(report)).toBe(
      'Tree 16 page 98: btreeInitPage() returns error code 11; and 99 more problems',
    );
    expect(integrityProblems(['row 3 missing from index images_name'])).toBe('row 3 missing from index images_name');
    expect(integrityProblems(['a', 'b'])).toBe('a; and 1 more problem');
    expect(integrityProblems(['*** in database main ***', ''])).toBe('the integrity check failed');
  });
});

describe('visor catalog backup / restore (PostgreSQL)', () => {
  it('backs up PostgreSQL under write load, restores into PostgreSQL and SQLite', async (ctx) => {
    if (skip) ctx.skip(skip);
    const backups = join(dir, 'pg-backups');
    await mkdir(backups, { mode: 0o700 });
    const config = await configs!.postgres('pg-source');
    const source = await seed(config);
    const file = join(backups, 'pg.visor');
    const { result, before, after } = await backupUnderLoad(config, file, source);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(after).toBeGreaterThan(before);
    expect(JSON.parse(result.stdout)).toMatchObject({ sourceKind: 'postgresql', snapshot: true });

    // Into PostgreSQL whose servers already have another key: the secrets are sealed again.
    const central = await configs!.postgres('pg-restored');
    await withCatalog(central, async () => undefined);
    const restored = await restore(file, central);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ note: expect.stringMatching(/sealed again/) });
    await expectRestored(central, source, { before, after });

    const local = await sqliteConfig('pg-to-sqlite');
    const home = await restore(file, local);
    expect(home.code).toBe(0);
    await expectRestored(local, source, { before, after });
  }, 240_000);
});
