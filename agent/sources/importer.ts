import { randomUUID } from 'node:crypto';
import type { ActionRecord, Catalog, RunRecord } from '../../core/catalog/port.js';
import { isVisorError, toVisorError } from '../../core/errors.js';
import type { Image } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import { isUnchanged, type Source, type SourceEntry } from '../../core/source/port.js';
import { resumableDownload } from '../../core/source/resumable.js';
import { RateLimiter, throttle } from '../../core/transfer/rate-limit.js';
import type { Caller } from '../service/access.js';
import type { ImageService } from '../service/image-service.js';
import { Limiter } from '../sync/limiter.js';
import { matches, parseFilter } from '../../core/source/filter.js';

/** What happens to an imported image whose entry left the list, expired, or was replaced. */
export const retirePolicies = ['deprecate', 'delete', 'keep'] as const;
export type RetirePolicy = (typeof retirePolicies)[number];

export interface Subscription {
  name: string;
  filters?: readonly string[];
  retire?: RetirePolicy;
  /** Bytes per second over all of this subscription's downloads together; unlimited when absent. */
  maxBandwidth?: number;
  /** Downloads at once. */
  concurrency?: number;
  access?: 'public' | 'private';
  owner?: string;
  /** Reconnections of a cut-off download, each resuming where it stopped. */
  retries?: number;
}

export interface ImportDeps {
  catalog: Catalog;
  images: ImageService;
  logger: Logger;
  agent?: string;
  now?: () => Date;
  signal?: AbortSignal;
  trigger?: RunRecord['trigger'];
}

/** Properties the importer keeps on every image it imports: how it finds them again. */
export const sourceKeys = {
  subscription: 'source:subscription',
  key: 'source:key',
  version: 'source:version',
  url: 'source:url',
  expires: 'source:expires',
  endorser: 'source:endorser',
  deprecated: 'deprecated',
  deprecatedAt: 'deprecated_at',
  deprecatedReason: 'deprecated_reason',
  replacement: 'replacement',
} as const;

const cursorKey = (name: string) => `source:${name}:cursor`;
const operator: Caller = { name: 'visor-sources', admin: true };

/**
 * One pass of a subscription: list (verified by the source), import new entries through the
 * image service's inspected upload (digests and size checked while streaming, nothing kept on
 * failure), and retire what left the list, expired, or was replaced by a newer version.
 * Recorded as a run (`source:<name>`) in the catalog's history.
 */
export async function syncSubscription(
  subscription: Subscription,
  source: Source,
  deps: ImportDeps,
): Promise<RunRecord> {
  const now = deps.now ?? (() => new Date());
  const run: RunRecord = {
    id: randomUUID(),
    target: `source:${subscription.name}`,
    agent: deps.agent ?? 'visor',
    trigger: deps.trigger ?? 'cli',
    dryRun: false,
    status: 'running',
    startedAt: now().toISOString(),
    actions: [],
  };
  await deps.catalog.runs.create(run);
  const log = deps.logger.child({ subscription: subscription.name });
  try {
    const filters = (subscription.filters ?? []).map(parseFilter);
    const previous = await deps.catalog.state.get<string>(cursorKey(subscription.name));
    const listing = await source.list({
      ...(previous ? { previous } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    const imported = await importedImages(deps.catalog, subscription.name);
    if (isUnchanged(listing)) {
      // The list did not change, but time passed: what expired meanwhile still retires.
      await retireExpired(imported, subscription, deps, run, now());
    } else {
      const wanted = listing.entries.filter((e) => matches(e, filters));
      await importEntries(wanted, imported, subscription, source, deps, run, now);
      const current = await importedImages(deps.catalog, subscription.name);
      await retireGone(current, wanted, subscription, deps, run, now());
      if (listing.cursor) await deps.catalog.state.set(cursorKey(subscription.name), listing.cursor);
    }
    run.status = run.actions.some((a) => a.result === 'failed') ? 'partial' : 'succeeded';
  } catch (error) {
    const failure = toVisorError(error);
    run.status = 'failed';
    run.error = failure.message;
    log.warn('subscription refused or failed', { kind: failure.kind, reason: failure.message });
  }
  run.finishedAt = now().toISOString();
  await deps.catalog.runs.update(run);
  return run;
}

async function importedImages(catalog: Catalog, name: string): Promise<Image[]> {
  const out: Image[] = [];
  let marker: string | undefined;
  do {
    const page = await catalog.images.list({
      filters: { [`properties.${sourceKeys.subscription}`]: name },
      limit: 500,
      ...(marker ? { marker } : {}),
    });
    out.push(...page.items);
    marker = page.nextMarker;
  } while (marker);
  return out.filter((i) => i.status !== 'deleted');
}

const expired = (entry: Pick<SourceEntry, 'expiresAt'>, now: Date) =>
  entry.expiresAt !== undefined && Date.parse(entry.expiresAt) <= now.getTime();

async function importEntries(
  wanted: SourceEntry[],
  imported: Image[],
  subscription: Subscription,
  source: Source,
  deps: ImportDeps,
  run: RunRecord,
  now: () => Date,
): Promise<void> {
  const limiter = new Limiter(subscription.concurrency ?? 2);
  const rate = subscription.maxBandwidth ? new RateLimiter(subscription.maxBandwidth) : undefined;
  await Promise.all(
    wanted.map((entry) =>
      limiter.run(async () => {
        const same = imported.find(
          (i) => i.properties[sourceKeys.key] === entry.key && i.properties[sourceKeys.version] === entry.version,
        );
        if (
          same &&
          same.status === 'available' &&
          same.properties[sourceKeys.deprecated] === 'true' &&
          !expired(entry, now())
        ) {
          // Back in the list (it had left, or had expired and was renewed): usable again.
          const cleared = { deprecated: null, deprecated_at: null, deprecated_reason: null, replacement: null };
          const back = await deps.catalog.images.update(same.id, same.revision, { properties: cleared });
          if (back.deprecation) await deps.images.undeprecate(operator, same.id);
          const detail = `${entry.key}@${entry.version}: back in the list, no longer deprecated`;
          run.actions.push({ action: 'import', result: 'updated', imageId: same.id, name: entry.name, detail });
          return;
        }
        if (same && same.status === 'available') {
          run.actions.push({
            action: 'import',
            result: 'unchanged',
            imageId: same.id,
            name: entry.name,
            detail: `${entry.key}@${entry.version}`,
          });
          return;
        }
        if (expired(entry, now())) {
          run.actions.push({
            action: 'import',
            result: 'skipped',
            name: entry.name,
            detail: `${entry.key}@${entry.version} expired on ${entry.expiresAt}`,
          });
          return;
        }
        // Same bytes under a new version (a re-published list): no download, the record follows.
        const sameBytes = imported.find(
          (i) => i.properties[sourceKeys.key] === entry.key && i.status === 'available' && sameContent(i, entry),
        );
        if (sameBytes) {
          await deps.catalog.images.update(sameBytes.id, sameBytes.revision, {
            properties: sourceProperties(subscription, entry),
          });
          run.actions.push({
            action: 'import',
            result: 'updated',
            imageId: sameBytes.id,
            name: entry.name,
            detail: `${entry.key}@${entry.version}: same content, no download`,
          });
          return;
        }
        run.actions.push(await importOne(entry, subscription, source, deps, rate));
      }),
    ),
  );
}

function sameContent(image: Image, entry: SourceEntry): boolean {
  const stated = Object.entries(entry.checksums);
  return (
    stated.length > 0 &&
    stated.every(([alg, value]) => image.checksums[alg as keyof Image['checksums']] === value) &&
    (entry.size === undefined || image.size === entry.size)
  );
}

function sourceProperties(subscription: Subscription, entry: SourceEntry): Record<string, string> {
  return {
    ...entry.properties,
    [sourceKeys.subscription]: subscription.name,
    [sourceKeys.key]: entry.key,
    [sourceKeys.version]: entry.version,
    [sourceKeys.url]: entry.location.url.slice(0, 1000),
    ...(entry.expiresAt ? { [sourceKeys.expires]: entry.expiresAt } : {}),
    ...(entry.endorser ? { [sourceKeys.endorser]: entry.endorser.slice(0, 1000) } : {}),
  };
}

async function importOne(
  entry: SourceEntry,
  subscription: Subscription,
  source: Source,
  deps: ImportDeps,
  rate?: RateLimiter,
): Promise<ActionRecord> {
  const started = performance.now();
  const base = { action: 'import', name: entry.name, detail: `${entry.key}@${entry.version}` };
  let image: Image | undefined;
  try {
    image = await deps.images.register(operator, {
      name: entry.name,
      architecture: entry.architecture ?? 'x86_64',
      ...(entry.diskFormat ? { diskFormat: entry.diskFormat } : {}),
      ...(entry.containerFormat ? { containerFormat: entry.containerFormat } : {}),
      ...(entry.os ? { os: entry.os } : {}),
      access: subscription.access ?? 'public',
      ...(subscription.owner ? { owner: subscription.owner } : {}),
      properties: sourceProperties(subscription, entry),
    });
    const body = resumableDownload(source, entry, {
      retries: subscription.retries ?? 3,
      ...(deps.signal ? { signal: deps.signal } : {}),
      onResume: (offset, error) =>
        deps.logger.info('download resumed', { key: entry.key, offset, reason: (error as Error).message }),
    }).pipe(throttle(rate, deps.signal));
    // The list's digests and size are the upload's expectations: a mismatch keeps nothing.
    const done = await deps.images.upload(operator, image.id, body, {
      ...(entry.size !== undefined ? { size: entry.size } : {}),
      expected: entry.checksums,
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    return {
      ...base,
      result: 'imported',
      imageId: done.id,
      bytes: done.size ?? 0,
      ms: Math.round(performance.now() - started),
    };
  } catch (error) {
    // A failed import is junk, not something to restore: deleted at once, whatever lifecycle.softDelete says.
    if (image) {
      const id = image.id;
      await deps.images
        .delete(operator, id)
        .then((gone) => (gone.status === 'deleted' ? deps.images.purge(operator, id) : undefined))
        .catch(() => undefined);
    }
    const failure = isVisorError(error) ? error : toVisorError(error);
    deps.logger.warn('import failed', {
      key: entry.key,
      version: entry.version,
      kind: failure.kind,
      reason: failure.message,
    });
    return {
      ...base,
      result: 'failed',
      error: { kind: failure.kind, message: failure.message },
      ms: Math.round(performance.now() - started),
    };
  }
}

async function retireGone(
  current: Image[],
  wanted: SourceEntry[],
  subscription: Subscription,
  deps: ImportDeps,
  run: RunRecord,
  now: Date,
): Promise<void> {
  const byKey = new Map(wanted.map((e) => [e.key, e]));
  const newest = new Map<string, Image>();
  for (const image of current) {
    const entry = byKey.get(image.properties[sourceKeys.key] ?? '');
    if (entry && image.properties[sourceKeys.version] === entry.version && image.status === 'available')
      newest.set(entry.key, image);
  }
  for (const image of current) {
    const key = image.properties[sourceKeys.key] ?? '';
    const entry = byKey.get(key);
    const replacement = newest.get(key);
    let reason: string | undefined;
    if (!entry) reason = 'left the list';
    else if (expired(entry, now) && image.properties[sourceKeys.version] === entry.version)
      reason = `expired on ${entry.expiresAt}`;
    else if (replacement && replacement.id !== image.id) reason = `replaced by version ${entry.version}`;
    if (reason)
      await retire(
        image,
        reason,
        subscription,
        deps,
        run,
        now,
        replacement && replacement.id !== image.id ? replacement.id : undefined,
      );
  }
}

async function retireExpired(
  current: Image[],
  subscription: Subscription,
  deps: ImportDeps,
  run: RunRecord,
  now: Date,
): Promise<void> {
  for (const image of current) {
    const expires = image.properties[sourceKeys.expires];
    if (expires && Date.parse(expires) <= now.getTime())
      await retire(image, `expired on ${expires}`, subscription, deps, run, now);
  }
}

async function retire(
  image: Image,
  reason: string,
  subscription: Subscription,
  deps: ImportDeps,
  run: RunRecord,
  now: Date,
  replacement?: string,
): Promise<void> {
  const policy = subscription.retire ?? 'deprecate';
  const base = { action: 'retire', imageId: image.id, name: image.name, detail: `${policy}: ${reason}` };
  if (policy === 'keep' || image.properties[sourceKeys.deprecated] === 'true') return;
  try {
    if (policy === 'delete') await deps.images.delete(operator, image.id);
    else {
      const updated = await deps.catalog.images.update(image.id, image.revision, {
        properties: {
          [sourceKeys.deprecated]: 'true',
          [sourceKeys.deprecatedAt]: now.toISOString(),
          [sourceKeys.deprecatedReason]: reason.slice(0, 250),
          ...(replacement ? { [sourceKeys.replacement]: replacement } : {}),
        },
      });
      // The catalog's own life cycle too (docs/lifecycle.md): each cloud then marks its copy
      // deprecated, with the replacement, in its own terms. A deprecated replacement is not one.
      if (!updated.deprecation) {
        const next = replacement ? await deps.catalog.images.find(replacement) : undefined;
        const usable = next && !next.deprecation && next.status === 'available';
        await deps.images.deprecate(operator, image.id, usable ? { replacement: next.id } : {});
      }
    }
    run.actions.push({ ...base, result: 'retired' });
  } catch (error) {
    const failure = toVisorError(error);
    run.actions.push({ ...base, result: 'failed', error: { kind: failure.kind, message: failure.message } });
  }
}
