import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { importFinished, ORIGIN_ID } from '../../agent/sync/desired.js';
import { catalogSnapshot, syncTarget } from '../../agent/sync/runner.js';
import type { Catalog } from '../../core/catalog/port.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { MemoryDriver } from '../../core/iaas/memory/driver.js';
import { FileStore } from '../../core/store/file/file-store.js';
import type { Store } from '../../core/store/port.js';
import { memorySyncWorld, type MemorySyncWorld } from '../support/memory-sync.js';

/**
 * The agent dies at every write of a sync that imports three of the cloud's own images (mode
 * full) and pushes two catalog images: the k-th write to the catalog, the store or the cloud is
 * either never made (`before`) or made and never answered (`after`), and from then on nothing the
 * dead agent does reaches any of them (its calls never return; puts and uploads in flight are
 * cut, as a kill cuts them). The cloud, the SQLite file and the store folder survive, as they
 * would a `kill -9`. Then:
 * - right after the death, no catalog record counts as imported unless its bits are in the store
 *   and match the cloud's (a cut-off import is `uploading` or `error`, never `available`);
 * - one more sync by a new agent process (new catalog connection, same files) converges: every
 *   cloud image imported exactly once, into one record with its bits, every catalog image pushed
 *   once, nothing half-made in the cloud, nothing left to do.
 * In-process (the memory cloud lives in this process, so a child process could not share it),
 * but the dead agent's writes are cut exactly where a kill would cut them.
 */

const never = () => new Promise<never>(() => undefined);

/** Counts writes across the catalog, the store and the cloud, and kills the agent at the chosen one. */
class Killer {
  readonly #controller = new AbortController();
  writes = 0;
  dead = false;
  /** What the write at the point of death was. */
  at: string | undefined;

  constructor(
    readonly point: number,
    readonly when: 'before' | 'after',
  ) {}

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * `target` with its `writes` methods counted; once dead, no call returns. `signalAt` names where
   * a call takes its signal.
   */
  wrap<T extends object>(
    target: T,
    name: string,
    writes: ReadonlySet<string>,
    signalAt: Record<string, number> = {},
  ): T {
    return new Proxy(target, {
      get: (object, key) => {
        const value: unknown = Reflect.get(object, key, object);
        if (typeof value !== 'function' || typeof key !== 'string') return value;
        return async (...args: unknown[]) => {
          if (this.dead) return never();
          const index = signalAt[key];
          if (index !== undefined) {
            // A kill cuts a transfer in flight: the put or upload sees its connection go.
            const given = args[index] as AbortSignal | undefined;
            args[index] = given ? AbortSignal.any([given, this.signal]) : this.signal;
          }
          const counted = writes.has(key) ? ++this.writes : undefined;
          if (counted === this.point && this.when === 'before') return this.#die(`${name}.${key}`);
          const result: unknown = await (value as (...a: unknown[]) => unknown).apply(object, args);
          if (counted === this.point) return this.#die(`${name}.${key}`);
          return this.dead ? never() : result;
        };
      },
    });
  }

  #die(what: string): Promise<never> {
    this.dead = true;
    this.at = what;
    this.#controller.abort(new Error('killed'));
    return never();
  }
}

function dyingCatalog(catalog: Catalog, killer: Killer): Catalog {
  const repos = {
    images: killer.wrap(catalog.images, 'images', new Set(['create', 'update', 'delete'])),
    runs: killer.wrap(catalog.runs, 'runs', new Set(['create', 'update', 'prune'])),
    leases: killer.wrap(catalog.leases, 'leases', new Set(['acquire', 'release'])),
    state: killer.wrap(catalog.state, 'state', new Set(['set', 'delete'])),
  };
  return new Proxy(catalog, {
    get: (object, key) => (key in repos ? repos[key as keyof typeof repos] : Reflect.get(object, key, object)),
  });
}

/** Puts take their signal in the options: a kill aborts the put in flight (no committed object). */
function dyingStore(store: Store, killer: Killer): Store {
  const wrapped = killer.wrap(store, 'store', new Set(['put', 'delete']));
  return new Proxy(wrapped, {
    get: (object, key) => {
      if (key !== 'put') return Reflect.get(object, key, object);
      return (k: string, body: Readable, options: Record<string, unknown> = {}) => {
        const signal = options['signal'] as AbortSignal | undefined;
        return wrapped.put(k, body, {
          ...options,
          signal: signal ? AbortSignal.any([signal, killer.signal]) : killer.signal,
        });
      };
    },
  });
}

interface Setup {
  world: MemorySyncWorld;
  /** The cloud's own images, by native id: their bytes. */
  theirs: Map<string, Buffer>;
  pushed: string[];
}

async function setup(): Promise<Setup> {
  const world = await memorySyncWorld();
  const theirs = new Map<string, Buffer>();
  for (const name of ['one', 'two', 'three']) {
    const bytes = randomBytes(24 * 1024 + theirs.size);
    const native = await world.cloud.create('lab', {
      name: `theirs-${name}`,
      disk_format: 'raw',
      container_format: 'bare',
    });
    await world.cloud.upload(native.id, Readable.from([bytes]));
    theirs.set(native.id, bytes);
  }
  for (const id of theirs.keys())
    while ((await world.cloud.get(id)).status !== 'active') await new Promise((r) => setTimeout(r, 2));
  const pushed = [];
  for (const name of ['alpha', 'beta']) pushed.push((await world.addImage(name, randomBytes(16 * 1024))).id);
  return { world, theirs, pushed };
}

const policy = {
  import: 'full',
  selector: { access: ['public'] },
  retire: { mode: 'delete' },
  timeouts: { action: '10s' },
};
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Problems with the imports as a fresh agent finds them: a record counted as imported without its bits. */
async function importProblems(catalog: Catalog, store: Store, theirs: Map<string, Buffer>): Promise<string[]> {
  const problems: string[] = [];
  for (const record of (await catalogSnapshot(catalog)).filter((i) => i.properties[ORIGIN_ID] !== undefined)) {
    if (!importFinished(record)) continue;
    const want = theirs.get(record.properties[ORIGIN_ID]!);
    if (record.status !== 'available' || !record.location) {
      problems.push(`${record.id} counts as imported but is ${record.status} without bits`);
      continue;
    }
    const got = await store.get(record.location.uri).then(
      async ({ stream }) => buffer(stream),
      () => undefined,
    );
    if (!got || !want || sha256(got) !== sha256(want) || record.checksums.sha256 !== sha256(want)) {
      problems.push(`${record.id} counts as imported but its bits are ${got ? "not the cloud image's" : 'missing'}`);
    }
  }
  return problems;
}

/** Objects in the store folder that no record points at (a committed object outliving its record). */
async function orphans(world: MemorySyncWorld, catalog: Catalog): Promise<string[]> {
  const referenced = new Set(
    (await catalogSnapshot(catalog)).flatMap((i) => (i.location ? [fileURLToPath(i.location.uri)] : [])),
  );
  const root = join(world.dir, 'images');
  return (await readdir(root)).filter(
    (name) => !name.startsWith('.tmp-') && ![...referenced].some((path) => path.endsWith(`/${name}`)),
  );
}

interface Outcome {
  point: string;
  at: string;
  problems: string[];
  orphans: number;
  recovery: string;
}

const outcomes: Outcome[] = [];

describe('crash mid-import: no record ever counts as imported without its bits', () => {
  afterAll(() => {
    // The report, for the log: where each death hit and how the recovery went.
    if (outcomes.length > 0)
      console.log(
        outcomes
          .map(
            (o) => `${o.point} at ${o.at}: problems ${o.problems.length}, orphans ${o.orphans}, recovery ${o.recovery}`,
          )
          .join('\n'),
      );
  });

  it('dies at every write, and the next agent converges', { timeout: 600_000 }, async () => {
    // A clean run first: how many writes a sync of this world makes.
    const clean = await setup();
    const counter = new Killer(Number.MAX_SAFE_INTEGER, 'before');
    const driver = new MemoryDriver({
      cloud: counter.wrap(clean.world.cloud, 'cloud', new Set(['create', 'upload', 'update', 'delete']), { upload: 2 }),
      project: 'lab',
      pollIntervalMs: 2,
    });
    const deps = clean.world.deps({
      catalog: dyingCatalog(clean.world.catalog, counter),
      stores: new Map([['local', dyingStore(clean.world.store, counter)]]),
    });
    const run = await syncTarget(clean.world.target(policy, { driver }), deps, { trigger: 'manual' });
    expect(run).toMatchObject({ status: 'succeeded', drift: 0 });
    await clean.world.close();
    const total = counter.writes;
    expect(total).toBeGreaterThan(15);

    let leaseChecked = false;
    for (let point = 1; point <= total; point++) {
      for (const when of ['before', 'after'] as const) {
        const { world, theirs, pushed } = await setup();
        const killer = new Killer(point, when);
        const deadInstance = `dead-${point}-${when}`;
        const cloud = killer.wrap(world.cloud, 'cloud', new Set(['create', 'upload', 'update', 'delete']), {
          upload: 2,
        });
        const deadDriver = new MemoryDriver({ cloud, project: 'lab', pollIntervalMs: 2 });
        const deadDeps = world.deps({
          catalog: dyingCatalog(world.catalog, killer),
          stores: new Map([['local', dyingStore(world.store, killer)]]),
          instanceId: deadInstance,
        });
        const dying = syncTarget(world.target(policy, { driver: deadDriver }), deadDeps, { trigger: 'schedule' });
        dying.catch(() => undefined);
        const finished = await Promise.race([
          dying.then(
            () => true,
            () => true,
          ),
          (async () => {
            while (!killer.dead) await new Promise((r) => setTimeout(r, 1));
            return false;
          })(),
        ]);
        expect(finished, `point ${point} ${when}: the agent finished before its ${point}th write`).toBe(false);
        await new Promise((r) => setTimeout(r, 5));

        // A new agent process: a new connection to the same catalog file, the same store folder, the same cloud.
        const catalog = new SqliteCatalog({ path: join(world.dir, 'catalog.db') });
        await catalog.init();
        const store = new FileStore({ root: join(world.dir, 'images'), fsync: false });
        const problems = await importProblems(catalog, store, theirs);
        expect(problems, `point ${point} ${when} (${killer.at})`).toEqual([]);

        const deps = world.deps({ catalog, stores: new Map([['local', store]]) });
        const target = world.target(policy, {
          driver: new MemoryDriver({ cloud: world.cloud, project: 'lab', pollIntervalMs: 2 }),
        });
        if (!leaseChecked && killer.at !== 'leases.acquire') {
          // The dead agent's lease keeps a new one out until it expires (here it is released by hand,
          // as an operator would).
          expect((await syncTarget(target, deps, { trigger: 'manual' })).error).toMatch(/another agent \(dead-/);
          leaseChecked = true;
        }
        await catalog.leases.release('target:lab', deadInstance);
        const recovery = await syncTarget(target, deps, { trigger: 'manual' });
        expect(recovery, `point ${point} ${when} (${killer.at}): ${JSON.stringify(recovery.actions)}`).toMatchObject({
          status: 'succeeded',
          drift: 0,
        });

        // Converged: every cloud image imported once, with its bits; every catalog image pushed once.
        const images = await catalogSnapshot(catalog);
        for (const [nativeId, bytes] of theirs) {
          const records = images.filter((i) => i.properties[ORIGIN_ID] === nativeId);
          expect(
            records.map((r) => [r.status, r.checksums.sha256]),
            `point ${point} ${when}: ${nativeId}`,
          ).toEqual([['available', sha256(bytes)]]);
        }
        expect(await importProblems(catalog, store, theirs)).toEqual([]);
        const listed = await target.driver.list();
        for (const id of pushed) {
          const copies = listed.filter((c) => c.markers?.imageId === id);
          expect(
            copies.map((c) => c.state),
            `point ${point} ${when}: copies of ${id}`,
          ).toEqual(['active']);
        }
        expect(
          listed
            .filter((c) => !c.markers)
            .map((c) => c.nativeId)
            .sort(),
        ).toEqual([...theirs.keys()].sort());
        expect(listed.every((c) => c.state === 'active')).toBe(true);
        const left = await orphans(world, catalog);
        outcomes.push({
          point: `#${point} ${when}`,
          at: killer.at ?? '?',
          problems,
          orphans: left.length,
          recovery: recovery.actions.map((a) => `${a.action}:${a.result}`).join(' ') || 'nothing to do',
        });
        await catalog.close();
        await world.catalog.close().catch(() => undefined);
        await world.close();
      }
    }
    expect(outcomes).toHaveLength(2 * total);
  });
});
