import { randomUUID } from 'node:crypto';
import type { ActionRecord, Catalog, ImageQuery, RunRecord, RunStatus } from '../../core/catalog/port.js';
import type { SyncPolicy } from '../../core/config/sync-policy.js';
import { toVisorError, VisorError } from '../../core/errors.js';
import type { CloudImage, ContentSource, IaasDriver } from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import type { Store } from '../../core/store/port.js';
import { execute, type ExecutorContext, type SyncEvent } from './executor.js';
import { Limiter } from './limiter.js';
import { RateLimiter } from '../../core/transfer/rate-limit.js';
import type { TransferLimits } from './transfer-limits.js';
import { placementsOf, savePlacements } from './placements.js';
import { hasLegacyCopies, plan, type Plan, type Rival } from './planner.js';
import { withRetry, withTimeout } from './retry.js';
import type { ShareAction } from './share-plan.js';
import { applySharing, readSharing, type SharingState } from './share-run.js';

/** A plan with its sharing step: the members to add or remove on copies that exist. */
export type SyncPlan = Plan & { sharing: ShareAction[] };

export interface Target {
  name: string;
  adapter: string;
  policy: SyncPolicy;
  driver: IaasDriver;
}

export interface SyncDeps {
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  defaultStore: string;
  cacheDir: string;
  /** Written into every image the agent creates (config agent.id). */
  agentId: string;
  /** This process; holds the leases. */
  instanceId: string;
  limiter: Limiter;
  /** Stores' transfer limits, shared by every run (config `stores.<name>.maxBandwidth`, `.concurrency`). */
  storeLimits?: ReadonlyMap<string, TransferLimits>;
  logger: Logger;
  leaseMs: number;
  keepRuns: number;
  publish?: (source: ContentSource) => { url: string; revoke(): void };
  now?: () => Date;
  /**
   * The other configured targets that see the same images as `target` (same cloud and
   * project/user/account). Asked only when the listing holds copies of the older marker scheme;
   * without it, no other target is assumed to see them.
   */
  rivals?: (target: Target, signal?: AbortSignal) => Promise<readonly Rival[]>;
}

export interface RunOptions {
  trigger: RunRecord['trigger'];
  dryRun?: boolean;
  signal?: AbortSignal;
  onEvent?: (event: SyncEvent) => void;
  onPlan?: (plan: Plan) => void;
  /** Only these catalog images (migrate); others are neither created nor retired. */
  onlyImages?: ReadonlySet<string>;
}

/** The plan's deferred notes as records of what was not done, and why. */
function deferredRecords(p: Plan): ActionRecord[] {
  return p.notes
    .filter((note) => note.deferred)
    .map((note) => ({
      action: 'retire',
      result: 'skipped',
      name: note.name,
      nativeId: note.nativeId,
      detail: note.message,
    }));
}

/** Catalog images matching `query`, page by page (`pageSize` at a time): never only the first page. */
export async function* catalogPages(
  catalog: Catalog,
  query: Omit<ImageQuery, 'limit' | 'marker'> = {},
  pageSize = 1000,
): AsyncGenerator<Image[]> {
  let marker: string | undefined;
  do {
    const page = await catalog.images.list({ ...query, limit: pageSize, ...(marker ? { marker } : {}) });
    yield page.items;
    marker = page.nextMarker;
  } while (marker);
}

/** Every catalog image, page by page. */
export async function catalogSnapshot(catalog: Catalog): Promise<Image[]> {
  const images: Image[] = [];
  for await (const page of catalogPages(catalog)) images.push(...page);
  return images;
}

/** The cloud's listing, with the target's list timeout and retries. */
export async function listCloud(target: Target, signal?: AbortSignal): Promise<CloudImage[]> {
  const { timeouts, retries } = target.policy;
  const listed = await withRetry(
    () => withTimeout(timeouts.list, `listing ${target.name}`, signal, (s) => target.driver.list({ signal: s })),
    { attempts: retries.attempts, backoffMs: retries.backoff, ...(signal ? { signal } : {}) },
  );
  return listed.value;
}

const cloudRates = new WeakMap<Target, RateLimiter>();

/** The cloud's one token bucket (`sync.maxBandwidth`), shared by all its transfers, run after run. */
function cloudRateOf(target: Target): RateLimiter | undefined {
  const rate = target.policy.maxBandwidth;
  if (!rate) return undefined;
  let bucket = cloudRates.get(target);
  if (!bucket) {
    bucket = new RateLimiter(rate);
    cloudRates.set(target, bucket);
  }
  return bucket;
}

/** How the executor works on `target` for a run with `deps`. */
export function executorContext(
  target: Target,
  deps: SyncDeps,
  extra: Partial<Pick<ExecutorContext, 'signal' | 'onEvent' | 'logger' | 'policy'>> = {},
): ExecutorContext {
  return {
    target: target.name,
    agentId: deps.agentId,
    policy: extra.policy ?? target.policy,
    driver: target.driver,
    catalog: deps.catalog,
    stores: deps.stores,
    defaultStore: deps.defaultStore,
    cacheDir: deps.cacheDir,
    limiter: deps.limiter,
    ...(cloudRateOf(target) ? { cloudRate: cloudRateOf(target)! } : {}),
    ...(deps.storeLimits ? { storeLimits: deps.storeLimits } : {}),
    logger: extra.logger ?? deps.logger,
    ...(extra.signal ? { signal: extra.signal } : {}),
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.publish ? { publish: deps.publish } : {}),
    ...(extra.onEvent ? { onEvent: extra.onEvent } : {}),
  };
}

/** Refuses a policy the cloud cannot carry out, before anything is done. */
export function checkPolicy(target: Target): void {
  const caps = target.driver.capabilities;
  const { mode } = target.policy.retire;
  if (!caps.retireModes.includes(mode)) {
    throw new VisorError(
      'config',
      `clouds.${target.name}.sync.retire.mode is ${mode}, ` +
        `but ${target.adapter} can only ${caps.retireModes.join(', ')}`,
    );
  }
  const { sharing } = target.policy;
  const asked = sharing.shareWith.length > 0 || Object.keys(sharing.members).length > 0;
  if (asked && !caps.sharing) {
    const why =
      `clouds.${target.name}.sync.sharing is set, ` +
      `but ${target.adapter} cannot share images with chosen principals`;
    throw new VisorError('config', `${why} (images are never made public instead; remove the setting)`);
  }
  const format = target.policy.diskFormat;
  if (format !== 'auto' && !caps.diskFormats.includes(format)) {
    throw new VisorError(
      'config',
      `clouds.${target.name}.sync.diskFormat is ${format}, ` +
        `which ${target.adapter} does not accept (${caps.diskFormats.join(', ')})`,
    );
  }
}

/** Reads both sides and plans; no lease needed (nothing is changed). */
export async function planTarget(
  target: Target,
  deps: SyncDeps,
  options: { signal?: AbortSignal; onlyImages?: ReadonlySet<string> } = {},
): Promise<SyncPlan> {
  return (await planWithSharing(target, deps, options)).plan;
}

async function planWithSharing(
  target: Target,
  deps: SyncDeps,
  options: { signal?: AbortSignal; onlyImages?: ReadonlySet<string> } = {},
): Promise<{ plan: SyncPlan; sharing: SharingState; observed: CloudImage[]; listed: CloudImage[] }> {
  checkPolicy(target);
  const listed = await listCloud(target, options.signal);
  let catalog = await catalogSnapshot(deps.catalog);
  if (options.onlyImages) catalog = catalog.filter((i) => options.onlyImages!.has(i.id));
  const retired = await deps.catalog.state.list<string>(`retired:${target.name}:`);
  const legacy = deps.rivals !== undefined && hasLegacyCopies(listed, deps.agentId);
  const only = options.onlyImages;
  const rivals = legacy ? await deps.rivals!(target, options.signal) : [];
  const result = plan({
    target: target.name,
    agentId: deps.agentId,
    policy: target.policy,
    capabilities: target.driver.capabilities,
    catalog,
    observed: only ? listed.filter((o) => !o.markers || only.has(o.markers.imageId)) : listed,
    retiredSince: new Map(retired.map(([key, since]) => [key.slice(`retired:${target.name}:`.length), since])),
    now: deps.now?.() ?? new Date(),
    rivals,
  });
  const observed = only ? listed.filter((o) => !o.markers || only.has(o.markers.imageId)) : listed;
  const input = { catalog: deps.catalog, agentId: deps.agentId, images: catalog, observed };
  const sharing = await readSharing(target, input, options.signal);
  const notes = [...result.notes, ...sharing.plan.notes];
  return { plan: { ...result, notes, sharing: sharing.plan.actions }, sharing, observed, listed };
}

/**
 * The sharing step of a run, after the other actions: on a fresh listing when they changed the
 * cloud (a new copy is shared in the run that made it), else on the plan's own reading.
 */
async function shareAfter(
  target: Target,
  deps: SyncDeps,
  first: { plan: SyncPlan; sharing: SharingState; observed: CloudImage[] },
  options: { signal?: AbortSignal; onlyImages?: ReadonlySet<string>; logger: Logger },
): Promise<ActionRecord[]> {
  // A cloud that cannot share has nothing to apply (its notes were in the plan); a stopped run stops.
  if (!target.driver.capabilities.sharing || options.signal?.aborted) return [];
  const changed = first.plan.actions.length > 0;
  const current = changed ? await planWithSharing(target, deps, options) : first;
  const context = { catalog: deps.catalog, observed: current.observed, logger: options.logger };
  return applySharing(target, current.sharing, {
    ...context,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(deps.now ? { now: deps.now } : {}),
  });
}

/** The replication status the verification found; failing to write it does not fail the run. */
async function recordPlacements(
  target: Target,
  deps: SyncDeps,
  run: RunRecord,
  verified: { plan: Plan; listed: CloudImage[] },
  log: Logger,
  scope?: ReadonlySet<string>,
): Promise<void> {
  const now = deps.now?.() ?? new Date();
  const input = { target: target.name, agentId: deps.agentId, observed: verified.listed, remaining: verified.plan };
  const placements = placementsOf({ ...input, run });
  try {
    const verification = { at: now.toISOString(), run: run.id };
    await savePlacements(deps.catalog.state, target.name, placements, verification, scope);
  } catch (caught) {
    log.warn('could not record where the images are', { error: toVisorError(caught) });
  }
}

export function runStatus(records: readonly ActionRecord[], error: string | undefined): RunStatus {
  if (error) return 'failed';
  const failed = records.filter((r) => r.result === 'failed').length;
  if (failed === 0) return 'succeeded';
  return failed === records.length ? 'failed' : 'partial';
}

/**
 * One sync run of one target: take the target's lease (so that no other agent works on it),
 * plan, execute, plan again to measure what is left (drift), and record it all in the
 * catalog's run history. A failure of the cloud fails this run only.
 */
export async function syncTarget(target: Target, deps: SyncDeps, options: RunOptions): Promise<RunRecord> {
  const log = deps.logger.child({ target: target.name });
  const run: RunRecord = {
    id: randomUUID(),
    target: target.name,
    agent: deps.agentId,
    trigger: options.trigger,
    dryRun: options.dryRun === true,
    status: 'running',
    startedAt: new Date().toISOString(),
    actions: [],
  };
  const leaseName = `target:${target.name}`;
  const lease = await deps.catalog.leases.acquire(leaseName, deps.instanceId, deps.leaseMs);
  if (!lease) {
    const holder = await deps.catalog.leases.get(leaseName);
    const finished = {
      ...run,
      status: 'failed' as const,
      finishedAt: new Date().toISOString(),
      error:
        `another agent (${holder?.holder ?? 'unknown'}) ` +
        `is syncing ${target.name} until ${holder ? new Date(holder.expiresAt).toISOString() : '?'}`,
    };
    if (!options.dryRun) await deps.catalog.runs.create(finished);
    log.warn('target busy', { holder: holder?.holder });
    return finished;
  }
  // From here the run holds the lease: its record's [startedAt, finishedAt] is when it held it, so
  // the runs of agents sharing a target never overlap in the history.
  run.startedAt = new Date().toISOString();
  // Renewed while the run goes on; a run that loses its lease stops at the next action.
  const controller = new AbortController();
  const onParent = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onParent, { once: true });
  const renew = setInterval(
    () => {
      deps.catalog.leases.acquire(leaseName, deps.instanceId, deps.leaseMs).then(
        (renewed) => {
          if (!renewed) {
            log.error('lost the target lease; stopping this run');
            controller.abort(new VisorError('conflict', 'lost the target lease'));
          }
        },
        (error: unknown) => log.warn('could not renew the target lease', { error }),
      );
    },
    Math.max(1000, Math.floor(deps.leaseMs / 3)),
  );
  renew.unref();

  if (!options.dryRun) {
    // We hold the lease: a run of this target still marked running was cut off (its agent died).
    for (const stale of await deps.catalog.runs.list({ target: target.name, limit: 20 })) {
      if (stale.status !== 'running') continue;
      await deps.catalog.runs.update({
        ...stale,
        status: 'failed',
        finishedAt: run.startedAt,
        error: 'abandoned: the agent stopped before this run finished',
      });
    }
    await deps.catalog.runs.create(run);
  }
  log.info('sync started', { run: run.id, trigger: options.trigger, dryRun: run.dryRun });
  let error: string | undefined;
  let verifyError: string | undefined;
  try {
    const only = options.onlyImages ? { onlyImages: options.onlyImages } : {};
    const planned = await planWithSharing(target, deps, { signal: controller.signal, ...only });
    const first = planned.plan;
    options.onPlan?.(first);
    for (const note of first.notes) {
      // What the plan leaves alone on purpose, said in the log of every run (not only by `visor plan`).
      const meta = { native: note.nativeId, name: note.name, reason: note.message };
      if (note.warn) log.warn('left alone', meta);
      else log.info('left alone', meta);
    }
    if (options.dryRun) {
      run.actions = [...first.actions, ...first.sharing].map((a) => ({
        action: a.kind,
        name: a.name,
        result: 'skipped' as const,
        detail: 'dry run',
        ...('nativeId' in a ? { nativeId: a.nativeId } : {}),
        ...('imageId' in a && a.imageId ? { imageId: a.imageId } : {}),
      }));
      run.drift = first.actions.length + first.sharing.length;
    } else {
      const onEvent = options.onEvent ? { onEvent: options.onEvent } : {};
      const context = executorContext(target, deps, { logger: log, signal: controller.signal, ...onEvent });
      // Held-back life cycle steps (in use, protected) are part of the run's record, with their reason.
      run.actions = [...(await execute(first, context)), ...deferredRecords(first)];
      try {
        const sharing = { signal: controller.signal, ...only, logger: log };
        run.actions.push(...(await shareAfter(target, deps, planned, sharing)));
      } catch (caught) {
        // Reading the cloud for the sharing step failed: the other actions stand; this one failed.
        const { kind, message } = toVisorError(caught);
        run.actions.push({ action: 'share', result: 'failed', error: { kind, message } });
      }
      // Verification pass: the cloud re-read; whatever would still be done is drift. When the
      // re-read itself fails, the actions still did what they did: partial, drift unknown.
      try {
        const verified = await planWithSharing(target, deps, { signal: controller.signal, ...only });
        run.drift = verified.plan.actions.length + verified.plan.sharing.length;
        // A run limited to some images (retry, migrate) saw only those: the others' placements stay as they were.
        await recordPlacements(target, deps, run, verified, log, options.onlyImages);
      } catch (caught) {
        verifyError = `checking the cloud after the run failed: ${toVisorError(caught).message}`;
        log.warn('verification after the run failed', { error: toVisorError(caught) });
      }
    }
  } catch (caught) {
    const visor = toVisorError(caught);
    error = visor.message;
    log.error('sync failed', { error: visor });
  } finally {
    clearInterval(renew);
    options.signal?.removeEventListener('abort', onParent);
    run.finishedAt = new Date().toISOString();
    await deps.catalog.leases.release(leaseName, deps.instanceId).catch(() => undefined);
  }
  run.status = runStatus(run.actions, error);
  if (verifyError && run.status === 'succeeded') run.status = 'partial';
  const problem = error ?? verifyError;
  if (problem !== undefined) run.error = problem;
  if (!options.dryRun) {
    await deps.catalog.runs.update(run);
    await deps.catalog.runs.prune(target.name, deps.keepRuns);
  }
  log.info('sync finished', {
    run: run.id,
    status: run.status,
    actions: run.actions.length,
    drift: run.drift,
    failed: run.actions.filter((a) => a.result === 'failed').length,
  });
  return run;
}

export { Limiter };
