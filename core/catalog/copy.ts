import { createHash } from 'node:crypto';
import { isVisorError, VisorError } from '../errors.js';
import type { Image } from '../image/model.js';
import type { Catalog, RunRecord, User } from './port.js';

/**
 * Copies a whole catalog into an empty one — images, users (sealed secrets included) and the
 * agent's records (run history, state) — then reads both back and compares counts and
 * checksums. Leases and the replay memory are not copied: they matter only to the processes
 * running on the source, for minutes. Keys under `catalog:` are each catalog's own bookkeeping
 * (e.g. which migrations it ran) and stay where they are.
 */
export interface CopyOptions {
  /** The user's secret as the destination must store it (re-sealed when the keys differ). */
  reseal?: (user: User) => string;
  /** What identifies a user's secret on either side (e.g. a digest of the opened secret). */
  secretOf: { source: (user: User) => string; destination: (user: User) => string };
  /** Called after each record written (progress). */
  onRecord?: (kind: RecordKind) => void;
}

export type RecordKind = 'images' | 'users' | 'runs' | 'state';
export const recordKinds: readonly RecordKind[] = ['images', 'users', 'runs', 'state'];

export interface Tally {
  count: number;
  /** sha256 over every record, in a fixed order, as canonical JSON (sorted keys). */
  sha256: string;
}

export interface CopyReport {
  source: Record<RecordKind, Tally>;
  destination: Record<RecordKind, Tally>;
  /** True when every count and checksum agree. */
  same: boolean;
}

const internalState = 'catalog:';
const allRuns = 1_000_000_000;

/** JSON with object keys sorted at every level: the same record gives the same text in any catalog. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}

/** Every image, by id, a page at a time (memory stays flat however big the catalog). */
export async function* allImages(catalog: Catalog): AsyncGenerator<Image> {
  let marker: string | undefined;
  do {
    const page = await catalog.images.list({ sort: 'id', dir: 'asc', limit: 1000, ...(marker ? { marker } : {}) });
    yield* page.items;
    marker = page.nextMarker;
  } while (marker);
}

async function allRunsOf(catalog: Catalog): Promise<RunRecord[]> {
  return (await catalog.runs.list({ limit: allRuns })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

async function stateOf(catalog: Catalog): Promise<[string, unknown][]> {
  return (await catalog.state.list('')).filter(([key]) => !key.startsWith(internalState));
}

/** Counts and checksums of a catalog's records; `secretOf` stands in for each user's sealed secret. */
export async function tallyCatalog(
  catalog: Catalog,
  secretOf: (user: User) => string,
): Promise<Record<RecordKind, Tally>> {
  const tally = () => ({ count: 0, hash: createHash('sha256') });
  const t = { images: tally(), users: tally(), runs: tally(), state: tally() };
  const add = (kind: RecordKind, record: unknown) => {
    t[kind].count += 1;
    t[kind].hash.update(`${canonicalJson(record)}\n`);
  };
  for await (const image of allImages(catalog)) add('images', image);
  for (const user of await catalog.users.list()) add('users', { ...user, sealedSecret: secretOf(user) });
  for (const run of await allRunsOf(catalog)) add('runs', run);
  for (const entry of await stateOf(catalog)) add('state', entry);
  const out = {} as Record<RecordKind, Tally>;
  for (const kind of recordKinds) out[kind] = { count: t[kind].count, sha256: t[kind].hash.digest('hex') };
  return out;
}

/** Why `catalog` cannot take a copy (it holds records already), or undefined when it is empty. */
export async function notEmpty(catalog: Catalog): Promise<string | undefined> {
  const images = await catalog.images.count();
  const users = (await catalog.users.list()).length;
  const runs = (await catalog.runs.list({ limit: 1 })).length;
  const state = (await stateOf(catalog)).length;
  const held = [
    `${images} images`,
    `${users} users`,
    `${runs ? 'a run history' : ''}`,
    `${state ? `${state} state records` : ''}`,
  ];
  return images + users + runs + state > 0 ? held.filter((h) => h && !h.startsWith('0 ')).join(', ') : undefined;
}

export async function copyCatalog(source: Catalog, destination: Catalog, options: CopyOptions): Promise<CopyReport> {
  const held = await notEmpty(destination);
  if (held) {
    throw new VisorError('conflict', `the destination catalog is not empty (${held}): copy only into a new catalog`);
  }
  const written = { images: [] as string[], users: [] as string[], targets: new Set<string>(), state: [] as string[] };
  try {
    for await (const image of allImages(source)) {
      await destination.images.create(image);
      written.images.push(image.id);
      options.onRecord?.('images');
    }
    for (const user of await source.users.list()) {
      await destination.users.create({ ...user, sealedSecret: options.reseal?.(user) ?? user.sealedSecret });
      written.users.push(user.name);
      options.onRecord?.('users');
    }
    for (const run of await allRunsOf(source)) {
      written.targets.add(run.target);
      await destination.runs.create(run);
      options.onRecord?.('runs');
    }
    for (const [key, value] of await stateOf(source)) {
      await destination.state.set(key, value);
      written.state.push(key);
      options.onRecord?.('state');
    }
  } catch (error) {
    // Nothing half-copied stays behind: the destination was empty, and is again.
    await undo(destination, written).catch(() => undefined);
    const why = isVisorError(error) ? error.message : String(error);
    throw new VisorError(
      isVisorError(error) ? error.kind : 'internal',
      `copy failed, the destination is left empty: ${why}`,
      { cause: error },
    );
  }
  const report = {
    source: await tallyCatalog(source, options.secretOf.source),
    destination: await tallyCatalog(destination, options.secretOf.destination),
  };
  const same = recordKinds.every(
    (k) =>
      report.source[k].count === report.destination[k].count &&
      report.source[k].sha256 === report.destination[k].sha256,
  );
  return { ...report, same };
}

async function undo(
  destination: Catalog,
  written: { images: string[]; users: string[]; targets: Set<string>; state: string[] },
): Promise<void> {
  for (const id of written.images) await destination.images.delete(id).catch(() => undefined);
  for (const name of written.users) await destination.users.delete(name).catch(() => undefined);
  for (const target of written.targets) await destination.runs.prune(target, 0).catch(() => undefined);
  for (const key of written.state) await destination.state.delete(key).catch(() => undefined);
}
