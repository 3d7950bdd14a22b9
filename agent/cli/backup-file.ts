import { closeSync, fsyncSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { RecordKind, Tally } from '../../core/catalog/copy.js';
import { VisorError } from '../../core/errors.js';

/**
 * A catalog backup is one SQLite file, whatever the catalog it came from: an SQLite catalog as
 * this visor writes it, plus a `visor_backup` table (the manifest). The manifest also holds the
 * credentials key of the source's servers, so that the backup alone restores working users:
 * losing the key with the server is the usual way a restore goes wrong. That makes the file as
 * secret as the key itself: it is created 0600 and never written into a folder others can read.
 */
export const backupFormat = 'visor-catalog-backup';
/** Bumped when a backup written by this visor could not be read by an older one. */
export const backupFormatVersion = 1;

export interface Manifest {
  format: string;
  formatVersion: number;
  visorVersion: string;
  createdAt: string;
  sourceKind: string;
  source: string;
  records: Record<RecordKind, Tally>;
  /** Base64 key that opens the users' sealed secrets (absent when the catalog has no users' key). */
  key?: string;
}

export function writeManifest(path: string, manifest: Manifest): void {
  const db = new Database(path);
  try {
    db.exec('CREATE TABLE visor_backup (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)');
    const insert = db.prepare('INSERT INTO visor_backup (key, value) VALUES (?, ?)');
    db.transaction(() => {
      for (const [key, value] of Object.entries(manifest)) insert.run(key, JSON.stringify(value));
    })();
    // One file, nothing beside it: no write-ahead log.
    db.pragma('journal_mode = DELETE');
  } finally {
    db.close();
  }
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const unusable = (file: string, why: string) =>
  new VisorError('invalidInput', `${file} is not a usable visor catalog backup: ${why}`);

/**
 * SQLite's integrity check as one line: it reports each problem on a line of its own (a hundred
 * for a file with a third overwritten), and an error is shown as one line. The first problem is
 * named, the rest counted.
 */
export function integrityProblems(report: readonly string[]): string {
  const lines = report.flatMap((row) => row.split('\n')).map((line) => line.trim());
  const problems = lines.filter((line) => line !== '' && !/^\*\*\* in database \w+ \*\*\*$/.test(line));
  if (problems.length === 0) return 'the integrity check failed';
  const more = problems.length - 1;
  return more === 0 ? problems[0]! : `${problems[0]!}; and ${more} more problem${more === 1 ? '' : 's'}`;
}

/**
 * Reads and checks the backup's manifest without changing the file: a sound SQLite database
 * (integrity check), a manifest this visor understands, and as many records of each kind as
 * the manifest says. Record checksums are compared after the restore, where secrets are opened.
 */
export function readManifest(file: string): Manifest {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw unusable(file, (error as Error).message);
  }
  try {
    let manifest: Manifest;
    try {
      const check = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
      if (check[0] !== 'ok') throw unusable(file, `damaged (${integrityProblems(check)})`);
      const table = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'visor_backup'`).get();
      if (!table) throw unusable(file, 'it has no backup manifest (a file written by `visor catalog backup` has one)');
      const rows = db.prepare('SELECT key, value FROM visor_backup').all() as { key: string; value: string }[];
      manifest = Object.fromEntries(rows.map((r) => [r.key, JSON.parse(r.value) as unknown])) as unknown as Manifest;
    } catch (error) {
      if (error instanceof VisorError) throw error;
      throw unusable(file, (error as Error).message);
    }
    if (manifest.format !== backupFormat) throw unusable(file, 'it has no visor backup manifest');
    if (!(manifest.formatVersion <= backupFormatVersion)) {
      throw new VisorError(
        'invalidInput',
        `${file} was written by visor ${manifest.visorVersion} in backup format ${manifest.formatVersion}; ` +
          `this visor reads up to format ${backupFormatVersion}: ` +
          `restore it with visor ${manifest.visorVersion} or newer`,
      );
    }
    const tables: Record<RecordKind, string> = { images: 'images', users: 'users', runs: 'runs', state: 'state' };
    for (const [kind, table] of Object.entries(tables) as [RecordKind, string][]) {
      const extra = kind === 'state' ? ` WHERE key NOT LIKE 'catalog:%'` : '';
      const { n } = db.prepare(`SELECT count(*) AS n FROM ${table}${extra}`).get() as { n: number };
      const expected = manifest.records?.[kind]?.count;
      if (n !== expected) throw unusable(file, `it holds ${n} ${kind} records, its manifest says ${expected}`);
    }
    return manifest;
  } finally {
    db.close();
  }
}

/**
 * The backup holds the key to every user's credentials: refuse a folder others can read or
 * write (they could list it, or swap the file), and never replace an existing file.
 */
export function checkBackupLocation(file: string): void {
  const folder = dirname(resolve(file));
  let mode: number;
  try {
    mode = statSync(folder).mode;
  } catch (error) {
    throw new VisorError('invalidInput', `cannot write the backup into ${folder}: ${(error as Error).message}`);
  }
  if ((mode & 0o006) !== 0) {
    const what = (mode & 0o002) !== 0 ? 'writable' : 'readable';
    throw new VisorError(
      'invalidInput',
      `refusing to write the backup into ${folder}: the folder is ${what} by every user, and the backup ` +
        'holds the key to all stored credentials; choose a folder only you can read (chmod o-rwx, or mkdir -m 700)',
    );
  }
  let exists = true;
  try {
    statSync(file);
  } catch {
    exists = false;
  }
  if (exists) throw new VisorError('conflict', `${file} exists already: a backup never replaces a file`);
}
