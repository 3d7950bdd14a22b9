import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { SecretBox } from '../../core/auth/secret-box.js';
import { allImages, copyCatalog, type CopyReport, recordKinds } from '../../core/catalog/copy.js';
import type { Catalog, User } from '../../core/catalog/port.js';
import type { VisorConfig } from '../../core/config/load.js';
import { isVisorError, VisorError } from '../../core/errors.js';
import type { Runtime } from '../runtime/open-runtime.js';
import { print, table, type CliIo } from './io.js';

/** What `visor catalog copy` did: the report, and what the operator should know besides. */
export interface CatalogCopy {
  report: CopyReport;
  /** The kinds of the two catalogs (sqlite, postgresql, ...). */
  sourceKind: string;
  destinationKind: string;
  notes: { note: string | undefined; missingStores: string[] };
}

/** One end of the copy: its catalog (opened) and where its servers' credentials key is. */
export interface Side {
  config: VisorConfig;
  catalog: Catalog;
  keyPath: string;
}

export async function sideOf(runtime: Runtime): Promise<Side> {
  const keyFile = runtime.config.server.auth.keyFile;
  const keyPath = isAbsolute(keyFile) ? keyFile : resolve(runtime.config.dataDir, keyFile);
  return { config: runtime.config, catalog: await runtime.catalog(), keyPath };
}

/**
 * Copies the source runtime's catalog into the destination's (which must be empty), users' sealed
 * secrets made to open with the destination's key, then compares both.
 */
export async function copyBetween(sourceRuntime: Runtime, destinationRuntime: Runtime): Promise<CatalogCopy> {
  return copySides(await sideOf(sourceRuntime), await sideOf(destinationRuntime));
}

/** `copyBetween` for catalogs opened otherwise (a backup file, a snapshot of a running catalog). */
export async function copySides(source: Side, destination: Side): Promise<CatalogCopy> {
  const users = await source.catalog.users.list();
  const seal = await sealing(source, destination, users);
  const report = await copyCatalog(source.catalog, destination.catalog, {
    ...(seal.reseal ? { reseal: seal.reseal } : {}),
    secretOf: seal.secretOf,
  });
  const missingStores = await storesMissing(source.catalog, destination.config);
  return {
    report,
    sourceKind: source.catalog.kind,
    destinationKind: destination.catalog.kind,
    notes: { note: seal.note, missingStores },
  };
}

const digest = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * How users' sealed secrets cross over. Each catalog's secrets are sealed with its servers' key
 * file (server.auth.keyFile): when the destination has none yet, it gets the source's key (the
 * secrets are copied as they are); when it has the same key, likewise; when it has another,
 * every secret is opened with the source's key and sealed again with the destination's.
 */
async function sealing(source: Side, destination: Side, users: readonly User[]) {
  const sourceKey = existsSync(source.keyPath) ? await readFile(source.keyPath, 'utf8') : undefined;
  if (sourceKey === undefined) {
    if (users.length > 0) {
      throw new VisorError(
        'config',
        `the source catalog has ${users.length} users, but its credentials key ${source.keyPath} is missing: ` +
          'their secrets cannot be opened; point server.auth.keyFile of the source config at the key its servers use',
      );
    }
    return { note: undefined, reseal: undefined, secretOf: { source: () => '', destination: () => '' } };
  }
  let note: string | undefined;
  if (!existsSync(destination.keyPath)) {
    await mkdir(dirname(destination.keyPath), { recursive: true, mode: 0o700 });
    await writeFile(destination.keyPath, sourceKey, { mode: 0o600, flag: 'wx' });
    note = `the destination had no credentials key: the source's was written to ${destination.keyPath}`;
  }
  const destinationKey = await readFile(destination.keyPath, 'utf8');
  const from = await SecretBox.fromFile(source.keyPath);
  const to = await SecretBox.fromFile(destination.keyPath);
  const open = (box: SecretBox, path: string) => (user: User) => {
    try {
      return digest(box.open(user.sealedSecret));
    } catch (error) {
      const why = isVisorError(error) ? error.message : String(error);
      throw new VisorError('config', `the secret of user ${user.name} cannot be opened with ${path}: ${why}`, {
        cause: error,
      });
    }
  };
  const same = sourceKey.trim() === destinationKey.trim();
  if (!same && users.length > 0)
    note = `user secrets were sealed again with the destination's key ${destination.keyPath}`;
  const reseal = same ? undefined : (user: User) => to.seal(from.open(user.sealedSecret));
  // Checked before anything is written: every secret opens with the source's key.
  const sourceSecret = open(from, source.keyPath);
  for (const user of users) sourceSecret(user);
  return { note, reseal, secretOf: { source: sourceSecret, destination: open(to, destination.keyPath) } };
}

/** Stores the copied images name that the destination's config does not have. */
async function storesMissing(catalog: Catalog, destination: VisorConfig): Promise<string[]> {
  const have = new Set(Object.keys(destination.stores));
  const missing = new Set<string>();
  for await (const image of allImages(catalog)) {
    const store = image.location?.store;
    if (store !== undefined && store !== 'http' && !have.has(store)) missing.add(store);
  }
  return [...missing].sort();
}

/** The copy's report as a table: counts and checksums of each kind of record, on both sides. */
export function printCopyReport(io: CliIo, { report, sourceKind, destinationKind, notes }: CatalogCopy): void {
  const { note, missingStores: missing } = notes;
  const rows = recordKinds.map((kind) => {
    const s = report.source[kind];
    const d = report.destination[kind];
    const ok = s.count === d.count && s.sha256 === d.sha256;
    return [
      kind,
      String(s.count),
      String(d.count),
      s.sha256.slice(0, 16),
      d.sha256.slice(0, 16),
      ok ? 'same' : 'DIFFERENT',
    ];
  });
  print(io, `Copied the ${sourceKind} catalog into the ${destinationKind} catalog:`);
  print(io, table(['RECORDS', 'SOURCE', 'COPY', 'SOURCE SHA256', 'COPY SHA256', ''], rows));
  if (note) print(io, `note: ${note}`);
  if (missing.length > 0) {
    print(io, `warning: images are stored in ${missing.join(', ')}, which the destination's config has no store for`);
  }
  print(io, 'Not copied: leases and the replay memory (they only matter to processes running on the source).');
}
