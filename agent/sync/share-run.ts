import type { ActionRecord, Catalog } from '../../core/catalog/port.js';
import { toVisorError } from '../../core/errors.js';
import type { SyncPolicy } from '../../core/config/sync-policy.js';
import type { CloudImage, IaasDriver, ShareMember } from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import { withRetry, withTimeout } from './retry.js';
import {
  describeShare,
  planSharing,
  shareKey,
  sharingCandidates,
  type ShareAction,
  type SharePlan,
  type ShareRecord,
} from './share-plan.js';

/**
 * Reading and applying the sharing step: the members of the copies that matter are read from
 * the cloud, planned (share-plan.ts, pure), changed through `driver.share`, and what visor added
 * is kept in the catalog's state (`share:<target>:<nativeId>`), so that a member the catalog no
 * longer wants is removed on a later run, and only such a member.
 */

/** The parts of a runner's target the sharing step uses. */
interface Target {
  name: string;
  policy: SyncPolicy;
  driver: IaasDriver;
}

export interface SharingState {
  plan: SharePlan;
  members: Map<string, ShareMember[]>;
  records: Map<string, ShareRecord>;
}

export async function shareRecords(catalog: Catalog, target: string): Promise<Map<string, ShareRecord>> {
  const prefix = shareKey(target, '');
  const entries = await catalog.state.list<ShareRecord>(prefix);
  return new Map(entries.map(([key, record]) => [key.slice(prefix.length), record]));
}

/** The cloud's members of each copy that matters, and the sharing plan from them. */
export async function readSharing(
  target: Target,
  input: { catalog: Catalog; agentId: string; images: readonly Image[]; observed: readonly CloudImage[] },
  signal?: AbortSignal,
): Promise<SharingState> {
  const records = await shareRecords(input.catalog, target.name);
  const base = {
    target: target.name,
    agentId: input.agentId,
    policy: target.policy,
    capabilities: target.driver.capabilities,
    catalog: input.images,
    observed: input.observed,
    records,
  };
  const members = new Map<string, ShareMember[]>();
  const { timeouts, retries } = target.policy;
  for (const copy of sharingCandidates(base)) {
    const read = (s: AbortSignal) => target.driver.members!(copy.nativeId, { signal: s });
    const what = `reading the members of ${copy.nativeId} in ${target.name}`;
    const retry = { attempts: retries.attempts, backoffMs: retries.backoff, ...(signal ? { signal } : {}) };
    members.set(copy.nativeId, (await withRetry(() => withTimeout(timeouts.list, what, signal, read), retry)).value);
  }
  return { plan: planSharing({ ...base, members }), members, records };
}

/**
 * Carries the sharing plan out, one copy at a time (a few calls each), and keeps the records:
 * what visor added is remembered, what it removed forgotten, and the members as the cloud
 * reports them kept for `visor where` and status. A failing copy fails its own record only.
 */
export async function applySharing(
  target: Target,
  state: SharingState,
  context: {
    catalog: Catalog;
    observed: readonly CloudImage[];
    logger: Logger;
    signal?: AbortSignal;
    now?: () => Date;
  },
): Promise<ActionRecord[]> {
  const out: ActionRecord[] = [];
  const at = () => (context.now?.() ?? new Date()).toISOString();
  const save = async (nativeId: string, record: Omit<ShareRecord, 'at'>) => {
    const key = shareKey(target.name, nativeId);
    if (record.managed.length === 0 && record.members.length === 0 && record.unmapped.length === 0) {
      await context.catalog.state.delete(key);
    } else await context.catalog.state.set(key, { ...record, at: at() });
  };
  const acted = new Set<string>();
  for (const action of state.plan.actions) {
    acted.add(action.nativeId);
    out.push(await applyOne(target, action, save, context));
  }
  // Copies with nothing to change: their members as last read, for `where` and status.
  for (const [nativeId, wanted] of state.plan.wanted) {
    if (acted.has(nativeId)) continue;
    const members = state.members.get(nativeId) ?? [];
    const before = state.records.get(nativeId)?.managed ?? [];
    const managed = wanted.dormant ? before : keepPresent(before, members);
    await save(nativeId, { imageId: wanted.imageId, name: wanted.name, managed, members, unmapped: wanted.unmapped });
  }
  // Records of copies that are gone from the cloud mean nothing any more.
  const listed = new Set(context.observed.map((c) => c.nativeId));
  for (const nativeId of state.records.keys()) {
    if (!listed.has(nativeId)) await context.catalog.state.delete(shareKey(target.name, nativeId));
  }
  return out;
}

async function applyOne(
  target: Target,
  action: ShareAction,
  save: (nativeId: string, record: Omit<ShareRecord, 'at'>) => Promise<void>,
  context: { logger: Logger; signal?: AbortSignal },
): Promise<ActionRecord> {
  const started = Date.now();
  const base = { action: 'share', imageId: action.imageId, nativeId: action.nativeId, name: action.name };
  const { timeouts, retries } = target.policy;
  try {
    const share = (signal: AbortSignal) =>
      target.driver.share!(action.nativeId, {
        wanted: action.wanted,
        managed: action.managed,
        claim: action.claim,
        signal,
      });
    const retry = {
      attempts: retries.attempts,
      backoffMs: retries.backoff,
      ...(context.signal ? { signal: context.signal } : {}),
    };
    const what = `sharing ${action.nativeId} in ${target.name}`;
    const { value: result, attempts } = await withRetry(
      () => withTimeout(timeouts.list, what, context.signal, share),
      retry,
    );
    // Planned additions count as visor's even when a retried call found them made by its first try.
    const managed = keepPresent(claimed(action), result.members);
    await save(action.nativeId, {
      imageId: action.imageId,
      name: action.name,
      managed,
      members: result.members,
      unmapped: action.unmapped,
    });
    const pending = result.members.filter((m) => m.status === 'pending').map((m) => m.principal);
    const waiting = pending.length > 0 ? `; pending acceptance by ${pending.join(', ')}` : '';
    const detail = `${describeShare(action)}${waiting}`;
    context.logger.info('sharing changed', { native: action.nativeId, added: result.added, removed: result.removed });
    return { ...base, result: 'updated', detail, attempts, ms: Date.now() - started };
  } catch (caught) {
    const error = toVisorError(caught);
    context.logger.warn('sharing failed', { native: action.nativeId, error });
    // A call cut off half-way may have added members: what is there now of visor's is recorded,
    // so that it can be removed later; when even that read fails, the records stay as they were.
    try {
      const members = await target.driver.members!(action.nativeId, context.signal ? { signal: context.signal } : {});
      const record = { imageId: action.imageId, name: action.name, members, unmapped: action.unmapped };
      await save(action.nativeId, { ...record, managed: keepPresent(claimed(action), members) });
    } catch (again) {
      context.logger.warn('could not re-read members after a failed share', { native: action.nativeId, error: again });
    }
    return { ...base, result: 'failed', error: { kind: error.kind, message: error.message }, ms: Date.now() - started };
  }
}

function claimed(action: ShareAction): string[] {
  return [...new Set([...action.managed, ...action.add])].sort();
}

/** Visor's members that are still members (one removed by hand is no longer visor's to track). */
function keepPresent(managed: readonly string[], members: readonly ShareMember[]): string[] {
  const present = new Set(members.map((m) => m.principal));
  return managed.filter((p) => present.has(p));
}

/** What status shows of a target's sharing: copies shared, memberships pending, members with no mapping. */
export async function sharingSummary(
  catalog: Catalog,
  target: string,
): Promise<{ shared: number; pending: string[]; unmapped: string[] }> {
  const records = await shareRecords(catalog, target);
  const pending = new Set<string>();
  const unmapped = new Set<string>();
  let shared = 0;
  for (const record of records.values()) {
    if (record.members.length > 0) shared++;
    for (const m of record.members) if (m.status === 'pending') pending.add(`${m.principal} (${record.name})`);
    for (const u of record.unmapped) unmapped.add(u);
  }
  return { shared, pending: [...pending].sort(), unmapped: [...unmapped].sort() };
}
