import type { ActionRecord, RunRecord } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import type { CloudImage } from '../../core/iaas/port.js';
import { globToRegExp, ORIGIN_ID, ORIGIN_TARGET } from './desired.js';
import { execute, type SyncEvent } from './executor.js';
import type { Plan } from './planner.js';
import {
  catalogPages,
  executorContext,
  listCloud,
  runStatus,
  syncTarget,
  type SyncDeps,
  type Target,
} from './runner.js';

export interface MigrateOptions {
  /** Only images whose name matches one of these globs (all when empty). */
  names?: readonly string[];
  /** Only these images of the source cloud (all when empty). */
  ids?: readonly string[];
  signal?: AbortSignal;
  onPullEvent?: (event: SyncEvent) => void;
  onPushEvent?: (event: SyncEvent) => void;
  /** Catalog page size while looking for images pulled before (the default suits any catalog). */
  pageSize?: number;
}

export interface Migration {
  /** One record per image pulled into the catalog this time (those pulled before are reused). */
  pulled: ActionRecord[];
  /** The push: a sync run of the destination limited to the migrated images. */
  run: RunRecord;
  /** Catalog ids of the images migrated: pulled now or before. */
  imageIds: ReadonlySet<string>;
  /** Of the pull and the push together: succeeded, partial or failed. */
  status: RunRecord['status'];
}

/**
 * Copies images from one cloud to another through the catalog: each chosen image of `from` is
 * pulled into the catalog with its bits (one pulled before is reused), then `to` is synced with
 * exactly those images, whatever its selector says. The listing, the pulls and the push run
 * with the same timeouts, retries, limits and paging as a sync.
 */
export async function migrate(
  from: Target,
  to: Target,
  deps: SyncDeps,
  options: MigrateOptions = {},
): Promise<Migration> {
  if (from.name === to.name) throw new VisorError('invalidInput', '--from and --to name the same cloud');
  const names = (options.names ?? []).map(globToRegExp);
  const ids = new Set(options.ids ?? []);
  const listing = await listCloud(from, options.signal);
  const chosen = listing.filter(
    (i) =>
      i.state === 'active' &&
      (names.length === 0 || names.some((re) => re.test(i.name))) &&
      (ids.size === 0 || ids.has(i.nativeId)),
  );
  if (chosen.length === 0) throw new VisorError('notFound', `no active image in ${from.name} matches`);

  // 1. Pull: each chosen image into the catalog, bits included (already imported ones are reused).
  const known = await pulledBefore(from, chosen, deps, options.pageSize);
  const pull: Plan = {
    target: from.name,
    notes: [],
    actions: chosen
      .filter((i) => !known.has(i.nativeId))
      .map((i) => ({ kind: 'import' as const, nativeId: i.nativeId, name: i.name, mode: 'full' as const })),
  };
  const pulled = await execute(
    pull,
    executorContext(from, deps, {
      policy: { ...from.policy, import: 'full' },
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onPullEvent ? { onEvent: options.onPullEvent } : {}),
    }),
  );
  const imageIds = new Set<string>([
    ...chosen.map((i) => known.get(i.nativeId)).filter((id): id is string => id !== undefined),
    ...pulled.filter((r) => r.result === 'imported').map((r) => r.imageId!),
  ]);

  // Interrupted while pulling: push nothing (the pulls cleaned up after themselves).
  options.signal?.throwIfAborted();

  // 2. Push: a sync of the destination limited to those images, whatever its selector says.
  const push: Target = { ...to, policy: { ...to.policy, selector: { access: ['public', 'private', 'shared'] } } };
  const run = await syncTarget(push, deps, {
    trigger: 'cli',
    onlyImages: imageIds,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onPushEvent ? { onEvent: options.onPushEvent } : {}),
  });
  return { pulled, run, imageIds, status: combined(runStatus(pulled, undefined), run.status) };
}

/** Native id -> catalog id of the chosen images an earlier pull from `from` imported, over every catalog page. */
async function pulledBefore(
  from: Target,
  chosen: readonly CloudImage[],
  deps: SyncDeps,
  pageSize?: number,
): Promise<Map<string, string>> {
  const wanted = new Set(chosen.map((i) => i.nativeId));
  const known = new Map<string, string>();
  for await (const page of catalogPages(
    deps.catalog,
    { filters: { [`properties.${ORIGIN_TARGET}`]: from.name } },
    pageSize,
  )) {
    for (const image of page) {
      const origin = image.properties[ORIGIN_ID];
      if (origin !== undefined && wanted.has(origin)) known.set(origin, image.id);
    }
  }
  return known;
}

function combined(a: RunRecord['status'], b: RunRecord['status']): RunRecord['status'] {
  if (a === 'succeeded' && b === 'succeeded') return 'succeeded';
  if (a === 'failed' && b === 'failed') return 'failed';
  return 'partial';
}
