import type { ActionRecord, Catalog } from '../../core/catalog/port.js';
import type { SyncPolicy } from '../../core/config/sync-policy.js';
import { isVisorError, toVisorError, VisorError } from '../../core/errors.js';
import { cleanupMs } from '../../core/iaas/kit/cleanup.js';
import { checkClaim, type Claim } from '../../core/iaas/markers.js';
import type { CloudImage, ContentSource, IaasDriver, Markers, RetireMode } from '../../core/iaas/port.js';
import { newImage } from '../../core/image/image.js';
import { nextStatus } from '../../core/image/lifecycle.js';
import type { Image, ImageDraft } from '../../core/image/model.js';
import { isValidPropertyValue, propertyKeyPattern, reservedPropertyKeys } from '../../core/image/schema.js';
import { errorReason } from '../../core/logging/error-summary.js';
import type { Logger } from '../../core/logging/logger.js';
import { recordingTaskLog, type TaskLogLine } from './task-log.js';
import { putInspected } from '../../core/store/inspected-put.js';
import type { Store } from '../../core/store/port.js';
import { verifyDigest } from '../../core/transfer/digest.js';
import { prepareContent } from './content.js';
import { importFinished, ORIGIN_ID, ORIGIN_TARGET, type DesiredImage } from './desired.js';
import { Limiter } from './limiter.js';
import type { RateLimiter } from '../../core/transfer/rate-limit.js';
import { paced, type TransferLimits } from './transfer-limits.js';
import type { Action, Plan, RetireAction } from './planner.js';
import { withRetry, withTimeout } from './retry.js';

export type SyncEvent =
  | { type: 'start'; action: Action }
  | { type: 'progress'; action: Action; bytes: number; total: number }
  /** A step of the action that takes a while: converting the image's format, then uploading it. */
  | { type: 'phase'; action: Action; phase: 'converting' | 'uploading'; detail?: string }
  | { type: 'end'; action: Action; record: ActionRecord };

export interface ExecutorContext {
  target: string;
  agentId: string;
  policy: SyncPolicy;
  driver: IaasDriver;
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  defaultStore: string;
  cacheDir: string;
  /** Shared by every target: actions at once across the agent (a freed slot goes to the cloud holding fewest). */
  limiter: Limiter;
  /** The cloud's token bucket (`sync.maxBandwidth`): every transfer to or from this cloud passes through it. */
  cloudRate?: RateLimiter;
  /** Stores' limits (`stores.<name>.maxBandwidth`, `.concurrency`), shared by every cloud's syncs. */
  storeLimits?: ReadonlyMap<string, TransferLimits>;
  logger: Logger;
  signal?: AbortSignal;
  /** When the current attempt of the action must be done (epoch ms): what `create` is given. */
  deadlineAt?: number;
  now?: () => Date;
  /** Makes a one-time URL serving a content source (for clouds that fetch images themselves). */
  publish?: (source: ContentSource) => { url: string; revoke(): void };
  onEvent?: (event: SyncEvent) => void;
}

export const retiredKey = (target: string, nativeId: string) => `retired:${target}:${nativeId}`;

/**
 * Carries out a plan: bounded concurrency per target and across the agent, a timeout per
 * action, retries with backoff and jitter for retryable error kinds only. Every action ends in
 * a record (created, updated, replaced, retired, imported, adopted, cleaned or failed); one
 * failing action never stops the others.
 */
export async function execute(plan: Plan, ctx: ExecutorContext): Promise<ActionRecord[]> {
  const records: ActionRecord[] = [];
  // Groups run one after the other (cleanups free space first; kernels before the machines that
  // name them; retirements last); actions within a group run side by side.
  const groups = new Map<string, Action[]>();
  for (const action of plan.actions) {
    const key = groupOf(action);
    groups.set(key, [...(groups.get(key) ?? []), action]);
  }
  const local = new Limiter(ctx.policy.concurrency);
  for (const key of ['cleanup', 'kernels', 'machines', 'update', 'import', 'retire']) {
    const actions = groups.get(key) ?? [];
    const results = await Promise.all(
      actions.map((action) => local.run(() => ctx.limiter.run(() => runAction(action, ctx), ctx.target))),
    );
    for (const list of results) records.push(...list);
  }
  return records;
}

function groupOf(action: Action): string {
  if (action.kind === 'create' || action.kind === 'replace' || action.kind === 'adopt')
    return action.desired.image.type === 'machine' ? 'machines' : 'kernels';
  return action.kind;
}

async function runAction(action: Action, ctx: ExecutorContext): Promise<ActionRecord[]> {
  ctx.onEvent?.({ type: 'start', action });
  const started = Date.now();
  const base = describe(action);
  const lines: TaskLogLine[] = [];
  const context = { action: action.kind, image: base.imageId, native: base.nativeId };
  const log = recordingTaskLog(ctx.logger.child(context), lines);
  let records: ActionRecord[];
  try {
    const { value, attempts } = await withRetry(
      () => {
        // One deadline per attempt: the action's timeout, which a driver's create honours as its own.
        const deadlineAt = Date.now() + ctx.policy.timeouts.action;
        return withTimeout(ctx.policy.timeouts.action, `${action.kind} of ${action.name}`, ctx.signal, (signal) =>
          perform(action, { ...ctx, signal, deadlineAt, logger: log }),
        );
      },
      {
        attempts: ctx.policy.retries.attempts,
        backoffMs: ctx.policy.retries.backoff,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        onRetry: (attempt, error, delay) =>
          log.warn('retrying after a retryable failure', { attempt, delayMs: delay, error: errorReason(error) }),
      },
    );
    records = value.map((r, i) => (i === 0 ? { ...r, attempts, ms: Date.now() - started } : r));
  } catch (error) {
    const visor = toVisorError(error);
    // Stopped on purpose (Ctrl-C, SIGTERM, an agent stop): no error for the operator to chase.
    if (ctx.signal?.aborted) log.warn('action stopped with the run', { error: visor });
    else log.error('action failed', { error: visor });
    records = [
      {
        ...base,
        result: 'failed',
        error: { kind: visor.kind, message: visor.message },
        attempts: (error as { attempts?: number }).attempts ?? 1,
        ms: Date.now() - started,
      },
    ];
  }
  // The action's own log lines go with its (first) record: the task log of the run history.
  if (lines.length > 0 && records[0]) records[0] = { ...records[0], log: lines };
  for (const record of records) ctx.onEvent?.({ type: 'end', action, record });
  return records;
}

function describe(action: Action): Pick<ActionRecord, 'action' | 'imageId' | 'nativeId' | 'name' | 'detail'> {
  const out: Pick<ActionRecord, 'action' | 'imageId' | 'nativeId' | 'name' | 'detail'> = {
    action: action.kind,
    name: action.name,
  };
  if ('imageId' in action && action.imageId) out.imageId = action.imageId;
  if ('nativeId' in action) out.nativeId = action.nativeId;
  if (action.kind === 'retire' || action.kind === 'cleanup') out.detail = action.reason;
  if (action.kind === 'update') out.detail = action.changes.join('; ');
  if (action.kind === 'adopt') out.detail = action.reason;
  return out;
}

async function perform(action: Action, ctx: ExecutorContext & { signal: AbortSignal }): Promise<ActionRecord[]> {
  const base = describe(action);
  switch (action.kind) {
    case 'create': {
      const created = await createCopy(action.desired, ctx, action);
      return [
        { ...base, nativeId: created.cloud.nativeId, result: 'created', bytes: created.bytes, detail: created.detail },
      ];
    }
    case 'replace': {
      const created = await createCopy(action.desired, ctx, action);
      const records: ActionRecord[] = [
        { ...base, nativeId: created.cloud.nativeId, result: 'replaced', bytes: created.bytes, detail: created.detail },
      ];
      // Only now that the new copy works do the old ones go.
      // Retried on their own (a transient failure here must not re-upload the new copy) and never
      // failing the replacement: what is left is retired by the next run.
      // Never the new copy itself: a cloud whose names are keys (Nimbus's repository) replaces in place.
      for (const old of action.retire.filter((r) => r.nativeId !== created.cloud.nativeId)) {
        try {
          const { attempts } = await withRetry(() => retire(old, ctx), {
            attempts: ctx.policy.retries.attempts,
            backoffMs: ctx.policy.retries.backoff,
            signal: ctx.signal,
            onRetry: (n, error, delay) =>
              ctx.logger.warn('retrying after a retryable failure', {
                attempt: n,
                delayMs: delay,
                error: errorReason(error),
                native: old.nativeId,
              }),
          });
          records.push({ ...describe(old), result: 'retired', detail: `${old.reason} (${old.mode})`, attempts });
        } catch (error) {
          const visor = toVisorError(error);
          records.push({
            ...describe(old),
            result: 'failed',
            error: { kind: visor.kind, message: visor.message },
            attempts: (error as { attempts?: number }).attempts ?? 1,
          });
        }
      }
      return records;
    }
    case 'update':
    case 'adopt': {
      const image = await currentImage(action.imageId, ctx);
      const current = await claimed(action.nativeId, action.claim, action.kind === 'adopt' ? 'adopt' : 'update', ctx);
      // An adopted copy keeps the content marker of what it holds: only an unmarked image is adopted for equal bits.
      const sha256 = action.claim.owner === 'none' ? image.checksums.sha256! : current.markers!.sha256;
      const { agentId: agent, target } = ctx;
      const markers: Markers = { agent, target, imageId: image.id, sha256, revision: image.revision };
      const format = action.desired.diskFormat;
      const desired = { ...action.desired.image, ...(format ? { diskFormat: format } : {}) };
      const options = { signal: ctx.signal, claim: action.claim };
      if (action.kind === 'update' && action.reveal) {
        if (!ctx.driver.reveal)
          throw new VisorError('unsupported', `${ctx.driver.adapter}: cannot show a hidden copy again`);
        await ctx.driver.reveal(action.nativeId, options);
        // No longer retired: a later retirement starts its grace period afresh.
        await ctx.catalog.state.delete(retiredKey(ctx.target, action.nativeId));
      }
      const updated = await ctx.driver.updateMetadata(action.nativeId, desired, markers, options);
      const kept = updated.markers;
      if (kept?.agent !== ctx.agentId || kept.target !== ctx.target || kept.imageId !== image.id) {
        throw new VisorError('invalidResponse', `the cloud did not keep visor's markers on ${action.nativeId}`);
      }
      return [{ ...base, result: action.kind === 'adopt' ? 'adopted' : 'updated' }];
    }
    case 'retire':
      await retire(action, ctx);
      return [
        {
          ...base,
          result: 'retired',
          detail: `${action.reason} (${action.startsGrace ? `${action.mode}, grace period started` : action.mode})`,
        },
      ];
    case 'cleanup': {
      await removeCopy(action.nativeId, action.claim, ctx);
      return [{ ...base, result: 'cleaned' }];
    }
    case 'import': {
      const imported = await importImage(action.nativeId, action.mode, ctx);
      return [
        {
          ...base,
          imageId: imported.image.id,
          result: 'imported',
          ...(imported.bytes ? { bytes: imported.bytes } : {}),
        },
      ];
    }
  }
}

/** The catalog image as it is now: an action never works from a stale snapshot's bits. */
async function currentImage(imageId: string, ctx: ExecutorContext): Promise<Image> {
  const image = await ctx.catalog.images.find(imageId);
  if (!image) throw new VisorError('notFound', `catalog image ${imageId} is gone`);
  if (!image.checksums.sha256) throw new VisorError('conflict', `catalog image ${imageId} has no content checksum yet`);
  return image;
}

/** A create holds a slot of the store its image is read from (`stores.<name>.concurrency`) while it runs. */
async function createCopy(
  desired: DesiredImage,
  ctx: ExecutorContext & { signal: AbortSignal },
  action: Action,
): Promise<{ cloud: CloudImage; bytes: number; detail: string }> {
  const store = desired.image.location?.store;
  const slots = store ? ctx.storeLimits?.get(store)?.slots : undefined;
  if (!slots) return copyToCloud(desired, ctx, action);
  return slots.run(() => copyToCloud(desired, ctx, action), ctx.target);
}

async function copyToCloud(
  desired: DesiredImage,
  ctx: ExecutorContext & { signal: AbortSignal },
  action: Action,
): Promise<{ cloud: CloudImage; bytes: number; detail: string }> {
  const image = await ctx.catalog.images.find(desired.image.id);
  if (image?.status !== 'available')
    throw new VisorError('conflict', `catalog image ${desired.image.id} is no longer available`);
  let published: { url: string; revoke(): void } | undefined;
  const prepared = await prepareContent(image, desired, {
    catalog: ctx.catalog,
    stores: ctx.stores,
    defaultStore: ctx.defaultStore,
    cacheDir: ctx.cacheDir,
    capabilities: ctx.driver.capabilities,
    signal: ctx.signal,
    // Every read of the bytes on their way to the cloud (uploads, and fetches of a published URL).
    pace: (from, stream) => paced(stream, [ctx.cloudRate, ctx.storeLimits?.get(from)?.rate], ctx.signal),
    onPhase: (phase, detail) => ctx.onEvent?.({ type: 'phase', action, phase, detail }),
    ...(ctx.driver.capabilities.importFromUrl && ctx.publish
      ? {
          publish: (source: ContentSource) => {
            published = ctx.publish!(source);
            return published.url;
          },
        }
      : {}),
  });
  if (ctx.driver.capabilities.requiresUrl && !prepared.source.url) {
    throw new VisorError(
      'config',
      `cloud ${ctx.target} fetches images by URL: set agent.publicUrl to an address the cloud can reach`,
    );
  }
  const markers: Markers = {
    agent: ctx.agentId,
    target: ctx.target,
    imageId: image.id,
    sha256: prepared.sha256,
    revision: image.revision,
  };
  const translated: Image = {
    ...desired.image,
    diskFormat: prepared.source.diskFormat,
    containerFormat: prepared.source.containerFormat,
    size: prepared.source.size,
  };
  ctx.onEvent?.({ type: 'phase', action, phase: 'uploading' });
  try {
    const cloud = await ctx.driver.create({
      image: translated,
      markers,
      content: prepared.source,
      // What is left of the action's deadline (preparing the content took some): the create's one deadline.
      timeoutMs: Math.max(1, (ctx.deadlineAt ?? Date.now() + ctx.policy.timeouts.action) - Date.now()),
      signal: ctx.signal,
      onProgress: (bytes) => ctx.onEvent?.({ type: 'progress', action, bytes, total: prepared.source.size }),
    });
    const kept = cloud.markers;
    const same = kept?.agent === ctx.agentId && kept.target === ctx.target && kept.imageId === image.id;
    if (!same || kept.sha256 !== prepared.sha256) {
      // Unmarked, it would never be found again: take it back out rather than leave an orphan —
      // discarded, whatever the retire policy (which may not allow deleting at all).
      await ctx.driver.discard(cloud.nativeId, { signal: AbortSignal.timeout(cleanupMs) }).catch((error: unknown) => {
        const meta = { native: cloud.nativeId, error: errorReason(error) };
        ctx.logger.error('could not remove a new image whose markers did not stick', meta);
      });
      throw new VisorError(
        'invalidResponse',
        `the cloud did not keep visor's markers on the new image ${cloud.nativeId}`,
      );
    }
    const detail =
      prepared.source.diskFormat !== prepared.inspection.format
        ? `converted ${prepared.inspection.format} -> ${prepared.source.diskFormat}`
        : prepared.source.diskFormat;
    return { cloud, bytes: prepared.source.size, detail };
  } finally {
    published?.revoke();
  }
}

/**
 * The last check before an image is changed: read it again and refuse (`conflict`, nothing
 * done) unless its markers still fit the claim the planner gave the action. The driver checks
 * once more just before it writes; this check holds for drivers of plugins that do not.
 */
async function claimed(nativeId: string, claim: Claim, doing: string, ctx: ExecutorContext & { signal?: AbortSignal }) {
  const current = await ctx.driver.get(nativeId, ctx.signal ? { signal: ctx.signal } : {});
  checkClaim(nativeId, current.markers, claim, doing);
  return current;
}

async function retire(action: RetireAction, ctx: ExecutorContext & { signal?: AbortSignal }): Promise<void> {
  const key = retiredKey(ctx.target, action.nativeId);
  try {
    await claimed(action.nativeId, action.claim, `${action.mode} (retire)`, ctx);
    const options = { ...(ctx.signal ? { signal: ctx.signal } : {}), claim: action.claim };
    await ctx.driver.retire(action.nativeId, action.mode, options);
  } catch (error) {
    // Already gone is what a delete wants.
    if (!(action.mode === 'delete' && isVisorError(error, 'notFound'))) throw error;
  }
  if (action.mode === 'delete') await ctx.catalog.state.delete(key);
  else if (action.startsGrace && !(await ctx.catalog.state.get(key)))
    await ctx.catalog.state.set(key, (ctx.now?.() ?? new Date()).toISOString());
}

/** A leftover of a failed or cut-off create: discarded (never merely hidden), whatever the retire policy. */
async function removeCopy(nativeId: string, claim: Claim, ctx: ExecutorContext & { signal?: AbortSignal }) {
  try {
    await claimed(nativeId, claim, 'clean up', ctx);
    await ctx.driver.discard(nativeId, { ...(ctx.signal ? { signal: ctx.signal } : {}), claim });
  } catch (error) {
    if (!isVisorError(error, 'notFound')) throw error;
  }
  await ctx.catalog.state.delete(retiredKey(ctx.target, nativeId));
}

/**
 * Copies a cloud's own image into the catalog (metadata, or metadata and bits), remembering where
 * it came from. Safe against a crash at any point: a full import's record is `uploading` from its
 * first write until its bits are stored and verified, so a record cut off anywhere never counts as
 * imported (`importFinished`); the next attempt, in this run or a later one, takes up that record
 * rather than making a second. Every status change goes through the image status machine.
 */
async function importImage(
  nativeId: string,
  mode: 'metadata' | 'full',
  ctx: ExecutorContext & { signal: AbortSignal },
): Promise<{ image: Image; bytes?: number }> {
  const cloud = await ctx.driver.get(nativeId, { signal: ctx.signal });
  const earlier = await importRecord(nativeId, ctx);
  // Finished by an earlier attempt whose answer was lost: importing again would make a twin.
  if (earlier && importFinished(earlier)) return { image: earlier };
  const meta = cloud.metadata;
  const draft: ImageDraft = {
    name: cloud.name.slice(0, 255) || nativeId,
    architecture: meta.architecture ?? 'x86_64',
    ...(cloud.diskFormat ? { diskFormat: cloud.diskFormat } : {}),
    ...(cloud.containerFormat ? { containerFormat: cloud.containerFormat } : {}),
    ...(meta.type ? { type: meta.type } : {}),
    ...(meta.minDisk !== undefined ? { minDisk: meta.minDisk } : {}),
    ...(meta.minRam !== undefined ? { minRam: meta.minRam } : {}),
    ...(meta.os ? { os: meta.os } : {}),
    tags: [...new Set(meta.tags ?? [])],
    access: cloud.access === 'public' ? 'public' : 'private',
    owner: ctx.agentId,
    properties: { ...safeProperties(meta.properties ?? {}), [ORIGIN_TARGET]: ctx.target, [ORIGIN_ID]: nativeId },
  };
  const images = ctx.catalog.images;
  if (mode === 'metadata') {
    // One write. An unfinished full import of the same image (the policy changed) becomes the record.
    if (!earlier) return { image: await images.create(newImage(draft)) };
    return {
      image: await images.update(earlier.id, earlier.revision, { status: nextStatus(earlier.status, 'clear') }),
    };
  }
  let image: Image;
  if (!earlier) {
    image = await images.create({ ...newImage(draft), status: nextStatus('locked', 'begin') });
  } else if (earlier.status === 'uploading') {
    // Cut off before: we hold the target's lease, so nobody else is writing it.
    image = earlier;
  } else {
    image = await images.update(earlier.id, earlier.revision, { status: nextStatus(earlier.status, 'begin') });
  }
  const store = ctx.stores.get(ctx.defaultStore)!;
  try {
    const download = await ctx.driver.download(nativeId, { signal: ctx.signal });
    const stream = paced(download.stream, [ctx.cloudRate, ctx.storeLimits?.get(ctx.defaultStore)?.rate], ctx.signal);
    // A cloud's image is inspected like any upload before it enters the catalog: an unsafe one
    // (a backing file, a format lie) fails the import, and nothing of it is kept.
    const put = await putInspected(store, image.id, stream, {
      signal: ctx.signal,
      ...(cloud.size !== undefined ? { size: cloud.size } : {}),
      declared: cloud.diskFormat,
      container: cloud.containerFormat,
    });
    try {
      verifyDigest(put, { ...(cloud.size !== undefined ? { size: cloud.size } : {}), checksums: cloud.checksums });
    } catch (error) {
      await store.delete(put.uri);
      throw error;
    }
    image = await images.update(image.id, image.revision, {
      ...(cloud.diskFormat ? {} : { diskFormat: put.inspection.format }),
      ...(cloud.containerFormat ? {} : { containerFormat: put.inspection.containerFormat }),
      ...(put.inspection.virtualSize !== undefined ? { virtualSize: put.inspection.virtualSize } : {}),
      status: nextStatus(image.status, 'store'),
      location: { store: ctx.defaultStore, uri: put.uri },
      size: put.size,
      checksums: put.checksums,
      uploadedAt: new Date().toISOString(),
    });
    return { image, bytes: put.size };
  } catch (error) {
    // Nothing of a failed import is kept. Should this delete fail too, the record stays
    // `uploading`, never counted as imported, and the next run takes it up.
    await images.delete(image.id).catch(() => undefined);
    throw error;
  }
}

/** The catalog record of an earlier import of this cloud image into this target, if there is one. */
async function importRecord(nativeId: string, ctx: ExecutorContext): Promise<Image | undefined> {
  const filters = { [`properties.${ORIGIN_TARGET}`]: ctx.target, [`properties.${ORIGIN_ID}`]: nativeId };
  const page = await ctx.catalog.images.list({ filters, limit: 10 });
  return page.items.find((i) => i.status !== 'deleted');
}

/** Cloud properties that are valid catalog properties; the rest are dropped rather than failing the import. */
function safeProperties(properties: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(properties)
      .filter(
        ([k, v]) =>
          propertyKeyPattern.test(k) &&
          !reservedPropertyKeys.has(k) &&
          typeof v === 'string' &&
          isValidPropertyValue(v),
      )
      .slice(0, 200),
  );
}

export type { RetireMode };
