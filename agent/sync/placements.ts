import type { RunRecord, StateRepository } from '../../core/catalog/port.js';
import type { CloudImage } from '../../core/iaas/port.js';
import type { Plan } from './planner.js';

/** A copy of a catalog image in one cloud, as the last verification listed it. */
export interface PlacedCopy {
  nativeId: string;
  /** The image's name in that cloud. */
  name: string;
  /** The cloud's state, in generic terms (pending, active, disabled, error, ...). */
  state: string;
  hidden: boolean;
}

/**
 * Where one catalog image stands in one cloud: the replication status. `status` is an open
 * word (in-sync, pending, failed, retiring, retired, error, ... and whatever later versions
 * add): readers show it as it is rather than knowing every value.
 */
export interface Placement {
  target: string;
  imageId: string;
  status: string;
  /** Why (the failure's message, the pending action, the retirement's reason). */
  detail?: string;
  copies: PlacedCopy[];
  /** When the image entered this status in this cloud. */
  since: string;
}

/** When a target's placements were last checked against its cloud, and by which run. */
export interface Verification {
  at: string;
  run: string;
}

const prefix = (target: string) => `placement:${target}:`;
const verifiedKey = (target: string) => `placement-verified:${target}`;

export interface PlacementInput {
  target: string;
  agentId: string;
  /** The cloud's listing of the verification pass (after the run's actions). */
  observed: readonly CloudImage[];
  /** What would still be done: the verification plan. */
  remaining: Plan;
  run: RunRecord;
}

/**
 * Every catalog image this target holds, is about to hold, or just failed to hold, with its
 * status. Pure: the runner saves the result. Only copies marked as this agent's and this
 * target's count; other targets' copies and the cloud's own images are not placements.
 */
export function placementsOf(input: PlacementInput): Map<string, Omit<Placement, 'since'>> {
  const out = new Map<string, Omit<Placement, 'since'>>();
  const copies = new Map<string, PlacedCopy[]>();
  for (const image of input.observed) {
    const m = image.markers;
    if (!m || m.agent !== input.agentId || m.target !== input.target || image.state === 'deleted') continue;
    const list = copies.get(m.imageId) ?? [];
    list.push({ nativeId: image.nativeId, name: image.name, state: image.state, hidden: image.hidden });
    copies.set(m.imageId, list);
  }
  const put = (imageId: string, status: string, detail?: string) => {
    const held = copies.get(imageId) ?? [];
    out.set(imageId, { target: input.target, imageId, status, ...(detail ? { detail } : {}), copies: held });
  };
  for (const [imageId, held] of copies) {
    const usable = held.find((c) => c.state === 'active' && !c.hidden);
    if (usable) put(imageId, 'in-sync');
    else if (held.some((c) => c.state === 'active' || c.state === 'disabled')) put(imageId, 'retired');
    else put(imageId, held[0]!.state);
  }
  for (const record of input.run.actions) {
    if (record.result === 'retired' && record.imageId && !out.has(record.imageId)) put(record.imageId, 'retired');
  }
  for (const action of input.remaining.actions) {
    if (!('imageId' in action) || !action.imageId) continue;
    if (action.kind === 'retire' || action.kind === 'cleanup') {
      // A leftover of an image that also has a good copy does not make the image pending.
      if (out.get(action.imageId)?.status !== 'in-sync') put(action.imageId, 'retiring', action.reason);
    } else if (action.kind === 'update') put(action.imageId, 'pending', `update: ${action.changes.join(', ')}`);
    else put(action.imageId, 'pending', action.kind);
  }
  for (const record of input.run.actions) {
    if (record.result !== 'failed' || !record.imageId) continue;
    // Failed in this run and still not done: the failure is the news.
    const now = out.get(record.imageId);
    if (now && now.status === 'in-sync') continue;
    put(record.imageId, 'failed', record.error ? `${record.action}: ${record.error.message}` : record.action);
  }
  return out;
}

/**
 * Writes a target's placements: only what changed (a run that changes nothing writes one
 * record, its verification time), and forgets images the target no longer holds. With `scope`,
 * only those images' placements are written or forgotten, and the target's verification time stays.
 */
export async function savePlacements(
  state: StateRepository,
  target: string,
  placements: ReadonlyMap<string, Omit<Placement, 'since'>>,
  verification: Verification,
  scope?: ReadonlySet<string>,
): Promise<void> {
  // A run limited to some images (a retry, a migration) saw only those: the others stay as they were.
  const inScope = (key: string) => scope === undefined || scope.has(key.slice(prefix(target).length));
  const old = new Map((await state.list<Placement>(prefix(target))).filter(([key]) => inScope(key)));
  for (const [imageId, placement] of placements) {
    if (scope && !scope.has(imageId)) continue;
    const key = `${prefix(target)}${imageId}`;
    const before = old.get(key);
    old.delete(key);
    const since = before && before.status === placement.status ? before.since : verification.at;
    const next: Placement = { ...placement, since };
    if (before && JSON.stringify(before) === JSON.stringify(next)) continue;
    await state.set(key, next);
  }
  for (const key of old.keys()) await state.delete(key);
  if (!scope) await state.set(verifiedKey(target), verification);
}

/** What `where` says of one cloud: its placement, or that the image is not there (or not yet known). */
export interface CloudPlacement {
  target: string;
  /** Absent when the target was never verified. */
  verified?: Verification;
  status: string;
  detail?: string;
  copies: PlacedCopy[];
  since?: string;
}

/** The image's standing in each of `targets`: the replication status across clouds. */
export async function whereIs(
  state: StateRepository,
  targets: readonly string[],
  imageId: string,
): Promise<CloudPlacement[]> {
  const out: CloudPlacement[] = [];
  for (const target of targets) {
    const verified = await state.get<Verification>(verifiedKey(target));
    const placement = await state.get<Placement>(`${prefix(target)}${imageId}`);
    const base = { target, ...(verified ? { verified } : {}) };
    if (placement) {
      const { status, detail, copies, since } = placement;
      out.push({ ...base, status, ...(detail ? { detail } : {}), copies, since });
    } else {
      out.push({ ...base, status: verified ? 'absent' : 'unknown', copies: [] });
    }
  }
  return out;
}
