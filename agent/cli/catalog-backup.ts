import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, link, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  allImages,
  notEmpty,
  type RecordKind,
  recordKinds,
  type Tally,
  tallyCatalog,
} from '../../core/catalog/copy.js';
import type { Catalog } from '../../core/catalog/port.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { VisorError } from '../../core/errors.js';
import { SecretBox } from '../../core/auth/secret-box.js';
import type { User } from '../../core/catalog/port.js';
import type { Runtime } from '../runtime/open-runtime.js';
import {
  type Manifest,
  backupFormat,
  backupFormatVersion,
  checkBackupLocation,
  readManifest,
  writeManifest,
} from './backup-file.js';
import { copySides, sideOf } from './catalog-copy.js';
import { version } from './version.js';

export interface BackupResult {
  file: string;
  sourceKind: string;
  /** False when the catalog offers no snapshot (MongoDB): records written meanwhile may be missing. */
  snapshot: boolean;
  records: Record<RecordKind, Tally>;
}

/** A folder only this process can read, removed with everything in it once `work` is done. */
async function withPrivateTemp<T>(work: (dir: string) => Promise<T>, under = tmpdir()): Promise<T> {
  const dir = await mkdtemp(join(under, '.visor-backup-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `visor catalog backup FILE`: the catalog as it is at one moment (a read snapshot, while the
 * servers and agents go on writing) copied into a new SQLite catalog next to FILE, with the
 * credentials key and a manifest, then named FILE: a reader never sees half a backup.
 */
export async function backupCatalog(runtime: Runtime, file: string): Promise<BackupResult> {
  checkBackupLocation(file);
  const target = resolve(file);
  const source = await sideOf(runtime);
  // Built in a private folder beside FILE (an SQLite catalog tightens the folder it opens in; the
  // same file system makes the final step atomic), then given its name.
  return withPrivateTemp(async (dir) => {
    const built = join(dir, 'catalog.sqlite');
    const copy = new SqliteCatalog({ path: built });
    await copy.init();
    // Nothing to lose if the process dies mid-way (the file is thrown away): no fsync per record.
    copy.db.pragma('synchronous = OFF');
    const keyPath = join(dir, 'credentials.key');
    let result: BackupResult;
    try {
      const read = async (view: Catalog) =>
        copySides({ ...source, catalog: view }, { config: runtime.config, catalog: copy, keyPath });
      const snapshot = source.catalog.snapshot !== undefined;
      const copied = snapshot ? await source.catalog.snapshot!(read) : await read(source.catalog);
      if (!copied.report.same) {
        const why = snapshot ? '' : ' (it offers no snapshot: stop its writers for a backup)';
        throw new VisorError('unavailable', `the catalog changed while it was read${why}: try again`);
      }
      result = { file: target, sourceKind: source.catalog.kind, snapshot, records: copied.report.source };
    } finally {
      await copy.close();
    }
    const key = existsSync(keyPath) ? (await readFile(keyPath, 'utf8')).trim() : undefined;
    writeManifest(built, {
      format: backupFormat,
      formatVersion: backupFormatVersion,
      visorVersion: version,
      createdAt: new Date().toISOString(),
      sourceKind: source.catalog.kind,
      source: (source.catalog as { where?: string }).where ?? source.catalog.kind,
      records: result.records,
      ...(key ? { key } : {}),
    });
    await chmod(built, 0o600);
    await syncFile(built);
    await publish(built, target);
    return result;
  }, dirname(target));
}

/** Gives the finished file its name: a link, which fails rather than replace a file created since the check. */
async function publish(built: string, target: string): Promise<void> {
  try {
    await link(built, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new VisorError('conflict', `${target} exists already: a backup never replaces a file`);
    // A file system without hard links: a rename, after the same check.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
    if (existsSync(target))
      throw new VisorError('conflict', `${target} exists already: a backup never replaces a file`);
    await rename(built, target);
  }
  await syncFile(dirname(target));
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface RestoreResult {
  file: string;
  destinationKind: string;
  /** What --force removed from the destination first. */
  removed: string | undefined;
  records: Record<RecordKind, Tally>;
  note: string | undefined;
  missingStores: string[];
}

/**
 * `visor catalog restore FILE`: checks the backup (integrity, manifest, counts, every secret
 * opens with its key) before the destination is touched, then copies it in and compares every
 * record kind's count and checksum with the manifest's. `force` empties a destination that
 * holds records first.
 */
export async function restoreCatalog(runtime: Runtime, file: string, force: boolean): Promise<RestoreResult> {
  const manifest = readManifest(file);
  return withPrivateTemp(async (dir) => {
    // Read from a private copy: opening an SQLite catalog writes to it (its log, its pragmas).
    const path = join(dir, 'catalog.sqlite');
    await copyFile(file, path);
    const keyPath = join(dir, 'credentials.key');
    if (manifest.key) await writeFile(keyPath, `${manifest.key}\n`, { mode: 0o600 });
    const backup = new SqliteCatalog({ path });
    await backup.init();
    try {
      // Every record checked against the manifest before the destination is touched.
      await verifyRecords(file, manifest, backup, keyPath);
      const destination = await sideOf(runtime);
      const held = await notEmpty(destination.catalog);
      if (held && !force) {
        throw new VisorError(
          'conflict',
          `the ${destination.catalog.kind} catalog is not empty (${held}): restore only into a new catalog, ` +
            'or add --force to delete those records first',
        );
      }
      const source = { config: runtime.config, catalog: backup, keyPath };
      if (held) await emptyCatalog(destination.catalog);
      const copied = await copySides(source, destination);
      const differs = recordKinds.filter(
        (k) =>
          copied.report.destination[k].count !== manifest.records[k].count ||
          copied.report.destination[k].sha256 !== manifest.records[k].sha256,
      );
      if (differs.length > 0) {
        throw new VisorError(
          'internal',
          `the restored ${differs.join(', ')} differ from what the backup's manifest records: ${file} was altered`,
        );
      }
      return {
        file,
        destinationKind: destination.catalog.kind,
        removed: held,
        records: copied.report.destination,
        ...copied.notes,
      };
    } finally {
      await backup.close();
    }
  });
}

async function verifyRecords(file: string, manifest: Manifest, backup: Catalog, keyPath: string): Promise<void> {
  const box = existsSync(keyPath) ? await SecretBox.fromFile(keyPath) : undefined;
  const secretOf = (user: User) => {
    if (!box) throw new Error(`it holds users but no key to open their secrets`);
    try {
      return createHash('sha256').update(box.open(user.sealedSecret)).digest('hex');
    } catch {
      throw new Error(`the secret of user ${user.name} does not open with its key`);
    }
  };
  let tally: Record<RecordKind, Tally>;
  try {
    tally = await tallyCatalog(backup, secretOf);
  } catch (error) {
    throw new VisorError('invalidInput', `${file} is not a usable visor catalog backup: ${(error as Error).message}`);
  }
  const differs = recordKinds.filter((k) => tally[k].sha256 !== manifest.records[k].sha256);
  if (differs.length > 0) {
    throw new VisorError(
      'invalidInput',
      `${file} is not a usable visor catalog backup: its ${differs.join(', ')} differ from its manifest's checksums`,
    );
  }
}

/** --force: every image, user, run and agent state record goes (leases and the catalog's own bookkeeping stay). */
async function emptyCatalog(catalog: Catalog): Promise<void> {
  const ids: string[] = [];
  for await (const image of allImages(catalog)) ids.push(image.id);
  for (const id of ids) await catalog.images.delete(id);
  for (const user of await catalog.users.list()) await catalog.users.delete(user.name);
  const targets = new Set((await catalog.runs.list({ limit: 1_000_000_000 })).map((r) => r.target));
  for (const target of targets) await catalog.runs.prune(target, 0);
  for (const [key] of await catalog.state.list('')) if (!key.startsWith('catalog:')) await catalog.state.delete(key);
}
