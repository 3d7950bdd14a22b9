import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Caller } from '../../agent/service/access.js';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import type { RunRecord } from '../../core/catalog/port.js';
import type { IaasDriver } from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';

/**
 * Three targets of one agent in one cloud: alpha and beta with the same credentials (one
 * project, user or account), gamma with another's. Overlapping and disjoint selectors, a sync,
 * a change of selectors and of one image, a sync again: each target creates, updates and
 * retires only its own copies, nothing of the others changes (compared as the cloud's own tool
 * shows each image), and every following sync is a no-op. Used by the Glance, OpenNebula and
 * EC2 suites.
 */

export const targets = ['alpha', 'beta', 'gamma'] as const;
export type TargetName = (typeof targets)[number];

/** One image as the cloud shows it: compared whole between snapshots. */
export type NativeRecord = Record<string, unknown>;

export interface Ownership {
  agent: string | undefined;
  target: string | undefined;
  imageId: string | undefined;
}

export interface SharedCloud {
  /** The `clouds:` entry of a target (adapter and options): alpha and beta share credentials, gamma has others. */
  cloud(target: TargetName): { adapter: string; options: Record<string, unknown> };
  /** The name template of a target (a cloud whose names are unique per owner needs one per target). */
  naming(target: TargetName): string;
  /** More of a target's sync policy (e.g. a visibility mapping its credentials allow). */
  policy?(target: TargetName): Record<string, unknown>;
  /** A retire mode that keeps the copy (hide, or disable where the cloud cannot hide). */
  softRetire: 'hide' | 'disable';
  /** Every image of this run in the cloud, by native id: retired-and-gone ones are absent. */
  snapshot(): Promise<Map<string, NativeRecord>>;
  markers(record: NativeRecord): Ownership;
  /** True when the record is retired by `softRetire`. */
  retired(record: NativeRecord): boolean;
  /** A driver to use instead of the one the config builds (credentials the config cannot express). */
  driver?(target: TargetName): IaasDriver | undefined;
  /** Extra top-level config (agent settings). */
  agent?: Record<string, unknown>;
  close(): Promise<void>;
}

const caller: Caller = { name: 'shared-cloud', admin: true };

/** Which catalog images (by index) each target's selector takes, before and after the change. */
const tagsOf: Record<number, string[]> = { 1: ['a', 'b'], 2: ['a'], 3: ['b', 'g'], 4: ['g'] };
const before: Record<TargetName, string> = { alpha: 'a', beta: 'b', gamma: 'g' };
const after: Record<TargetName, string> = { alpha: 'b', beta: 'b', gamma: 'a' };
const wanted = (tag: string) => [1, 2, 3, 4].filter((i) => tagsOf[i]!.includes(tag));

export function sharedCloudScenario(
  name: string,
  setUp: () => Promise<SharedCloud | { skip: string }>,
  timeout = 600_000,
): void {
  describe(`three targets of one agent in one ${name}`, () => {
    let cloud: SharedCloud | undefined;
    let skip: string | undefined;
    let dir: string;
    let session: SyncSession | undefined;
    const agentId = `shared-${randomBytes(3).toString('hex')}`;
    const images = new Map<number, Image>();
    const indexOf = (imageId: string | undefined) => [...images].find(([, image]) => image.id === imageId)?.[0];
    let first: Map<string, NativeRecord>;

    const open = async (selection: Record<TargetName, string>) => {
      await session?.close();
      const config = join(dir, 'visor.yaml');
      const clouds = Object.fromEntries(
        targets.map((t) => [
          t,
          {
            ...cloud!.cloud(t),
            sync: {
              selector: { tags: [selection[t]], access: ['public', 'private'] },
              naming: cloud!.naming(t),
              retire: { mode: t === 'gamma' ? 'delete' : cloud!.softRetire },
              retries: { attempts: 2, backoff: '500ms' },
              timeouts: { action: '120s', list: '60s' },
              ...cloud!.policy?.(t),
            },
          },
        ]),
      );
      await writeFile(
        config,
        stringify({
          dataDir: join(dir, 'data'),
          logging: { level: 'error' },
          agent: { id: agentId, leaseSeconds: 30, ...cloud!.agent },
          clouds,
        }),
      );
      session = await openSession({ configFile: config, env: {}, logger: silentLogger }, undefined, {
        serveContent: true,
      });
      for (const t of targets) {
        const replacement = cloud!.driver?.(t);
        const built = session.built.targets.get(t);
        if (replacement && built) {
          await built.driver.close();
          session.built.targets.set(t, { ...built, driver: replacement });
        }
        expect(session.built.targets.has(t), `target ${t}: ${session.built.failed.get(t)?.message}`).toBe(true);
      }
    };
    /** All three at once, as `visor sync` runs them. */
    const syncAll = async (): Promise<Record<TargetName, RunRecord>> => {
      const runs = await Promise.all(
        targets.map((t) => syncTarget(session!.built.targets.get(t)!, session!.deps, { trigger: 'cli' })),
      );
      return Object.fromEntries(targets.map((t, i) => [t, runs[i]!])) as Record<TargetName, RunRecord>;
    };
    const results = (run: RunRecord) =>
      run.actions.map((a) => `${a.action}:${a.result}:${indexOf(a.imageId) ?? '?'}`).sort();
    /** "target:catalog index" of every record of this run's agent. */
    const keyOf = (record: NativeRecord): string => {
      const m = cloud!.markers(record);
      return `${m.target ?? 'none'}:${indexOf(m.imageId) ?? m.imageId ?? '?'}`;
    };
    const byKey = (snapshot: Map<string, NativeRecord>) => {
      const out = new Map<string, Array<[string, NativeRecord]>>();
      for (const [id, record] of snapshot) {
        expect(cloud!.markers(record).agent, `image ${id} of this run carries this run's agent`).toBe(agentId);
        out.set(keyOf(record), [...(out.get(keyOf(record)) ?? []), [id, record]]);
      }
      return out;
    };

    beforeAll(async () => {
      const result = await setUp();
      if ('skip' in result) {
        skip = result.skip;
        return;
      }
      cloud = result;
      dir = await mkdtemp(join(tmpdir(), `visor-shared-${name}-`));
      await open(before);
      for (const i of [1, 2, 3, 4]) {
        const size = 256 * 1024 + i * 4096;
        const image = await session!.images.register(caller, {
          name: `img${i}`,
          architecture: 'x86_64',
          diskFormat: 'raw',
          tags: tagsOf[i]!,
          access: i === 4 ? 'private' : 'public',
        });
        images.set(i, await session!.images.upload(caller, image.id, Readable.from([randomBytes(size)]), { size }));
      }
    }, timeout);
    afterAll(async () => {
      await session?.close();
      await cloud?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    }, timeout);

    it(
      'each target creates its own copies, and a second sync is a no-op that changes nothing',
      async (ctx) => {
        if (skip) ctx.skip(skip);
        const runs = await syncAll();
        for (const t of targets) {
          expect(runs[t].status, `${t}: ${JSON.stringify(runs[t].actions)}`).toBe('succeeded');
          expect(results(runs[t])).toEqual(wanted(before[t]).map((i) => `create:created:${i}`));
          expect(runs[t].drift).toBe(0);
        }
        first = await cloud!.snapshot();
        const copies = byKey(first);
        const expected = targets.flatMap((t) => wanted(before[t]).map((i) => `${t}:${i}`)).sort();
        expect([...copies.keys()].sort()).toEqual(expected);
        for (const [key, list] of copies) expect(list, key).toHaveLength(1);

        const again = await syncAll();
        for (const t of targets) expect(again[t].actions, t).toEqual([]);
        expect(await cloud!.snapshot()).toEqual(first);
      },
      timeout,
    );

    it(
      'after selectors and an image change, each target creates, updates and retires only its own copies',
      async (ctx) => {
        if (skip) ctx.skip(skip);
        await open(after);
        images.set(1, await session!.images.update(caller, images.get(1)!.id, { name: 'img1-renamed' }));
        const runs = await syncAll();
        for (const t of targets) expect(runs[t].status, `${t}: ${JSON.stringify(runs[t].actions)}`).toBe('succeeded');
        // alpha: a,b -> b; beta: b -> b; gamma: g -> a. Image 1 (in a and b) was renamed.
        expect(results(runs.alpha)).toEqual(['create:created:3', 'retire:retired:2', 'update:updated:1']);
        expect(results(runs.beta)).toEqual(['update:updated:1']);
        expect(results(runs.gamma)).toEqual([
          'create:created:1',
          'create:created:2',
          'retire:retired:3',
          'retire:retired:4',
        ]);

        const second = await cloud!.snapshot();
        const was = byKey(first);
        const now = byKey(second);
        // Copies nobody had to touch are exactly as they were, as the cloud shows them.
        const [betaThreeId, betaThree] = was.get('beta:3')![0]!;
        expect(second.get(betaThreeId)).toEqual(betaThree);
        // Updated in place, each by its own target: same image, new name, still its own markers.
        for (const key of ['alpha:1', 'beta:1']) {
          const [id, old] = was.get(key)![0]!;
          expect(second.get(id), key).toBeDefined();
          expect(second.get(id), key).not.toEqual(old);
          expect(keyOf(second.get(id)!)).toBe(key);
          expect(JSON.stringify(second.get(id))).toContain('img1-renamed');
        }
        // Retired by the policy of the target that owns it.
        const [alphaTwoId] = was.get('alpha:2')![0]!;
        expect(cloud!.retired(second.get(alphaTwoId)!)).toBe(true);
        for (const key of ['gamma:3', 'gamma:4']) expect(second.has(was.get(key)![0]![0]), key).toBe(false);
        // New copies of the targets that now select them; nothing else appeared.
        expect([...now.keys()].sort()).toEqual([
          'alpha:1',
          'alpha:2',
          'alpha:3',
          'beta:1',
          'beta:3',
          'gamma:1',
          'gamma:2',
        ]);
        for (const [key, list] of now) expect(list, key).toHaveLength(1);
        for (const t of targets) {
          const retiredHere = [...second.values()]
            .filter((r) => cloud!.markers(r).target === t && cloud!.retired(r))
            .map(keyOf);
          expect(retiredHere, t).toEqual(t === 'alpha' ? ['alpha:2'] : []);
        }

        const again = await syncAll();
        for (const t of targets) expect(again[t].actions, t).toEqual([]);
        expect(await cloud!.snapshot()).toEqual(second);
      },
      timeout,
    );
  });
}
