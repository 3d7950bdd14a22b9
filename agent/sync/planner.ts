import type { SyncPolicy } from '../../core/config/sync-policy.js';
import type { Claim } from '../../core/iaas/markers.js';
import type { CloudImage, DriverCapabilities, RetireMode } from '../../core/iaas/port.js';
import type { Checksums, Image } from '../../core/image/model.js';
import { type DesiredImage, importFinished, ORIGIN_ID, ORIGIN_TARGET, selectorFor } from './desired.js';
import {
  desiredOf,
  type LifecycleNote,
  lifecycleChanges,
  lifecycleView,
  obsoleteMode,
  type Wanted,
} from './lifecycle-plan.js';

/**
 * The planner (DESIGN.md §5): a pure function of desired state (catalog + policy) and observed
 * state (the cloud's listing, filtered by ownership markers). Applying its plan and planning
 * again gives an empty plan. Only images whose markers name this agent and this target are
 * ever changed (plus images of the older marker scheme that this target claims, see
 * docs/ownership.md); other targets' copies are invisible to it; the cloud's own images are at
 * most read (import) or, when the policy allows, adopted. Every action on an existing image
 * carries the claim it was planned under, which the executor and the driver check again.
 */

export type Action =
  | { kind: 'create'; imageId: string; name: string; desired: DesiredImage }
  /** Content changed: the new copy first, then `retire` (the old copies), only once the new one works. */
  | { kind: 'replace'; imageId: string; name: string; desired: DesiredImage; retire: RetireAction[] }
  | UpdateAction
  /** An unmarked image with the same content (`claim.owner` none), or a copy of the older marker scheme (legacy). */
  | AdoptAction
  | RetireAction
  | { kind: 'cleanup'; nativeId: string; name: string; imageId?: string; reason: string; claim: Claim }
  | { kind: 'import'; nativeId: string; name: string; mode: 'metadata' | 'full' };

interface UpdateAction {
  kind: 'update';
  imageId: string;
  name: string;
  desired: DesiredImage;
  nativeId: string;
  changes: string[];
  claim: Claim;
  /** A hidden or disabled copy of the very same bits, made visible and usable again (`driver.reveal`) first. */
  reveal?: true;
}

interface AdoptAction {
  kind: 'adopt';
  imageId: string;
  name: string;
  desired: DesiredImage;
  nativeId: string;
  claim: Claim;
  reason: string;
}

export interface RetireAction {
  kind: 'retire';
  nativeId: string;
  name: string;
  imageId?: string;
  mode: RetireMode;
  reason: string;
  /** The first step of a retirement with a grace period: remember when it began. */
  startsGrace: boolean;
  claim: Claim;
}

/** Another target of this agent whose driver lists the same images (same cloud and project/user). */
export interface Rival {
  name: string;
  policy: SyncPolicy;
}

export interface Note {
  nativeId: string;
  name: string;
  message: string;
  /** Needs an operator (an older-scheme copy no target may claim), rather than time. */
  warn?: boolean;
  /** A step the life cycle asks for, held back (in use, protected): recorded in the run, not only logged. */
  deferred?: boolean;
}

export interface Plan {
  target: string;
  actions: Action[];
  /** Things the planner chose not to do, and why (an image in use, a retirement in its grace period, ...). */
  notes: Note[];
}

export interface PlanInput {
  target: string;
  agentId: string;
  policy: SyncPolicy;
  capabilities: DriverCapabilities;
  /** The whole catalog (the planner selects). */
  catalog: readonly Image[];
  /** The cloud's listing. */
  observed: readonly CloudImage[];
  /** When each of our copies entered retirement (native id -> ISO time), kept by the executor. */
  retiredSince: ReadonlyMap<string, string>;
  now: Date;
  /**
   * The other targets of this agent that see the same images; needed only when the listing has
   * copies of the older marker scheme (no target), to decide which target claims them.
   */
  rivals?: readonly Rival[];
}

/** True when the listing holds copies of the older marker scheme made by `agentId` (no target in the markers). */
export function hasLegacyCopies(observed: readonly CloudImage[], agentId: string): boolean {
  return observed.some((i) => i.markers?.agent === agentId && i.markers.target === undefined && i.state !== 'deleted');
}

/** An empty list shared by the images that have no copy (most images, on a first sync). */
const noCopies: readonly CloudImage[] = Object.freeze([]);

/** Active, visible and of the wanted content: a copy that may be kept. */
function isGood(c: CloudImage, sha256: string | undefined): boolean {
  return c.state === 'active' && !c.hidden && c.markers!.sha256 === sha256;
}

export function plan(input: PlanInput): Plan {
  const { target, agentId, policy, capabilities } = input;
  const actions: Action[] = [];
  const notes: Note[] = [];
  const live: CloudImage[] = [];
  const unmarked: CloudImage[] = [];
  for (const c of input.observed) {
    if (c.state === 'deleted') continue;
    live.push(c);
    if (!c.markers) unmarked.push(c);
  }
  const selected = selectorFor(policy, target);
  const { observed, now, catalog } = input;
  const life = lifecycleView({ target, agentId, policy, capabilities, catalog, observed, now, selected });
  const wanted = life.wanted;
  if (life.notes.length > 0) notes.push(...namedNotes(life.notes, live, catalog, agentId));
  const legacy = claimLegacy(input, live, wanted, notes);
  // Ours: our agent and our target, plus the older-scheme copies this target claims. Another
  // target's copies are not ours even with our agent id: they are never touched, nor adopted.
  // Joined with the wanted images: their ids indexed once (the first of a repeated id wins, as a
  // scan would find it), each of our copies looked up once; copies of images not wanted here are
  // grouped apart, in the order they are found. (No set of every catalog id is built.)
  const slotOf = new Map<string, number>();
  for (let i = wanted.length - 1; i >= 0; i--) slotOf.set(wanted[i]!.image.id, i);
  const repeated = slotOf.size < wanted.length;
  // A single copy (the usual case) is kept as is, an array only for several.
  const copiesAt: (CloudImage | CloudImage[] | undefined)[] = new Array(wanted.length);
  const leftovers = new Map<string, CloudImage[]>();
  for (const c of live) {
    const m = c.markers;
    if (m?.agent !== agentId || (m.target !== target && !(legacy.claimed.size > 0 && legacy.claimed.has(c.nativeId))))
      continue;
    const slot = slotOf.get(m.imageId);
    if (slot === undefined) {
      const list = leftovers.get(m.imageId);
      if (list) list.push(c);
      else leftovers.set(m.imageId, [c]);
    } else {
      const held = copiesAt[slot];
      if (Array.isArray(held)) held.push(c);
      else copiesAt[slot] = held === undefined ? c : [held, c];
    }
  }
  const claimOf = (copy: CloudImage): Claim =>
    copy.markers!.target === undefined
      ? { owner: 'legacy', agent: agentId, imageId: copy.markers!.imageId }
      : { owner: 'target', agent: agentId, target, imageId: copy.markers!.imageId };
  const adoption = policy.adopt ? adoptionCandidates(unmarked) : undefined;
  const cleanup = (copy: CloudImage, imageId: string) =>
    actions.push({
      kind: 'cleanup',
      nativeId: copy.nativeId,
      name: copy.name,
      imageId,
      reason: copy.state === 'error' ? 'failed copy' : 'unfinished copy (interrupted upload)',
      claim: claimOf(copy),
    });
  const desired = (w: Wanted) => desiredOf(w, policy, capabilities);
  const adopt = (copy: CloudImage, w: Wanted, claim: Claim, reason: string) => {
    const d = desired(w);
    const { id: imageId, name } = d.image;
    actions.push({ kind: 'adopt', imageId, name, desired: d, nativeId: copy.nativeId, claim, reason });
  };
  /** Brings `copy` to what `w` wants (with `reveal`: shown again first, hidden or disabled as it is). */
  const update = (copy: CloudImage, w: Wanted, changes: string[], reveal = false) => {
    const { nativeId } = copy;
    const base = { kind: 'update', imageId: w.image.id, name: w.name, desired: desired(w), nativeId, changes } as const;
    actions.push({ ...base, claim: claimOf(copy), ...(reveal ? { reveal: true as const } : {}) });
  };

  const retireAction = (copy: CloudImage, reason: string, immediateDelete = false, mode?: RetireMode) => {
    const guard = life.guarded.get(copy.markers!.imageId);
    if (guard !== undefined) {
      const message = `${reason}: left alone, ${guard}`;
      notes.push({ nativeId: copy.nativeId, name: copy.name, message, deferred: true });
      return undefined;
    }
    const step = retireStep(copy, reason, policy, capabilities, input.retiredSince, input.now, immediateDelete, mode);
    if ('note' in step) notes.push({ nativeId: copy.nativeId, name: copy.name, message: step.note, ...step.flags });
    else if (step.action) return { ...step.action, claim: claimOf(copy) } satisfies RetireAction;
    return undefined;
  };
  const retire = (copy: CloudImage, reason: string, immediateDelete = false, mode?: RetireMode) => {
    const action = retireAction(copy, reason, immediateDelete, mode);
    if (action) actions.push(action);
  };

  for (let i = 0; i < wanted.length; i++) {
    const w = wanted[i]!;
    const image = w.image;
    // Left alone while an older-scheme copy of it has no single claimant (noted by claimLegacy).
    if (legacy.blocked.size > 0 && legacy.blocked.has(image.id)) continue;
    const held = copiesAt[repeated ? slotOf.get(image.id)! : i];
    const sha256 = image.checksums.sha256;
    // One good copy (the usual case) is kept with no list and no sort; `copies` are the others to look at.
    let keep: CloudImage | undefined;
    let copies: readonly CloudImage[] = noCopies;
    if (Array.isArray(held)) {
      copies = held;
      keep = held.filter((c) => isGood(c, sha256)).sort(preferKeep(w, capabilities))[0];
    } else if (held !== undefined && isGood(held, sha256)) keep = held;
    else if (held !== undefined) copies = [held];
    for (const copy of copies) {
      if (copy === keep) continue;
      if (copy.state === 'pending' || copy.state === 'error') {
        // We hold the target's lease, so nothing of ours is legitimately in flight: leftovers of a crash or a failed
        // upload.
        cleanup(copy, image.id);
      } else if (isGood(copy, sha256)) {
        retire(copy, 'duplicate copy', true);
      } else if (keep) {
        retire(copy, copy.markers!.sha256 === sha256 ? 'superseded copy' : 'content replaced');
      }
    }
    if (keep) {
      if (keep.markers!.target === undefined) {
        // The older scheme, claimed by this target: markers rewritten to name the target, bits untouched.
        adopt(keep, w, claimOf(keep), 'older markers without a target');
        continue;
      }
      const changes = differences(keep, w, capabilities);
      if (changes.length > 0) update(keep, w, changes);
      continue;
    }
    // A copy hidden or disabled earlier (obsolete, then undeprecated; or no longer selected, then
    // selected again) holds the very same bits: shown again where the cloud can, never uploaded twice.
    const reveals = capabilities.reveals ?? [];
    const revivable = copies
      .filter(
        (c) =>
          c.markers!.target === target &&
          c.markers!.sha256 === sha256 &&
          // A disabled copy may be hidden as part of it (OpenNebula renames it): enabling undoes both.
          (c.state === 'disabled'
            ? reveals.includes('disable')
            : c.state === 'active' && (!c.hidden || reveals.includes('hide'))),
      )
      .sort(preferKeep(w, capabilities))[0];
    if (revivable) {
      const shown = [
        ...(revivable.hidden ? ['hidden -> visible'] : []),
        ...(revivable.state === 'disabled' ? ['disabled -> active'] : []),
        ...differences(revivable, w, capabilities),
      ];
      update(revivable, w, shown, true);
      for (const c of copies)
        if (c !== revivable && (c.state === 'active' || c.state === 'disabled')) retire(c, 'superseded copy');
      continue;
    }
    const stale = copies.filter((c) => c.state === 'active' || c.state === 'disabled');
    const candidate = adoption && stale.length === 0 ? adoption.take(image) : undefined;
    if (candidate) {
      adopt(candidate, w, { owner: 'none' }, 'unmarked image with the same content');
    } else if (stale.some((c) => c.markers!.sha256 !== sha256 && !c.hidden && c.state === 'active')) {
      const old = stale.filter((c) => c.markers!.sha256 !== sha256 && !c.hidden && c.state === 'active');
      const retireOld = old
        .map((c) => retireAction(c, 'content replaced'))
        .filter((a): a is RetireAction => a !== undefined);
      actions.push({ kind: 'replace', imageId: image.id, name: w.name, desired: desired(w), retire: retireOld });
      for (const c of stale) if (!old.includes(c)) retire(c, 'superseded copy');
    } else {
      actions.push({ kind: 'create', imageId: image.id, name: w.name, desired: desired(w) });
      for (const c of stale) retire(c, 'superseded copy');
    }
  }

  // Which leftover ids the catalog still has: a pass over the catalog images not wanted here (a
  // leftover is not wanted), not a set of every catalog id.
  const inCatalog = new Set<string>();
  if (leftovers.size > 0) for (const image of life.unwanted) if (leftovers.has(image.id)) inCatalog.add(image.id);
  const soft = obsoleteMode(policy, capabilities);
  // Where the cloud cannot say whether VMs use an image, the plan says so (its own refusal is then the only guard).
  const unseenUse = capabilities.detectsInUse ? '' : ' (this cloud cannot tell whether VMs use it)';
  for (const [imageId, copies] of leftovers) {
    const departure = life.departures.get(imageId);
    for (const copy of copies) {
      if (copy.state === 'pending' || copy.state === 'error') cleanup(copy, imageId);
      else if (departure?.how === 'delete') retire(copy, departure.reason + unseenUse, true);
      else if (departure?.how === 'soft') retire(copy, departure.reason, false, soft);
      else if (departure) retire(copy, departure.reason);
      else retire(copy, inCatalog.has(imageId) ? 'no longer selected for this cloud' : 'removed from the catalog');
    }
  }

  if (policy.import !== 'off') {
    const imported = new Set<string | undefined>();
    for (const i of catalog)
      if (i.properties[ORIGIN_TARGET] === target && importFinished(i)) imported.add(i.properties[ORIGIN_ID]);
    for (const u of unmarked) {
      if (adoption?.adopted.has(u.nativeId) || imported.has(u.nativeId) || u.state !== 'active') continue;
      actions.push({ kind: 'import', nativeId: u.nativeId, name: u.name, mode: policy.import });
    }
  }

  return { target, actions: order(actions), notes };
}

/** The life cycle's notes, each with the copy it is about (ours, any target) or its catalog image's name. */
function namedNotes(
  lifeNotes: readonly LifecycleNote[],
  live: readonly CloudImage[],
  catalog: readonly Image[],
  agentId: string,
): Note[] {
  const ids = new Set(lifeNotes.map((n) => n.imageId));
  const copies = new Map<string, CloudImage>();
  for (const c of live) {
    const id = c.markers?.agent === agentId ? c.markers.imageId : undefined;
    if (id !== undefined && ids.has(id) && !copies.has(id)) copies.set(id, c);
  }
  const names = new Map<string, string>();
  for (const image of catalog) if (ids.has(image.id) && !names.has(image.id)) names.set(image.id, image.name);
  return lifeNotes.map((note) => {
    const copy = copies.get(note.imageId);
    const name = copy?.name ?? names.get(note.imageId) ?? note.imageId;
    return { nativeId: copy?.nativeId ?? '', name, message: note.message, ...(note.warn ? { warn: true } : {}) };
  });
}

interface Adoption {
  /** The first unmarked image (listing order) not adopted yet, active, visible, of the same content; now adopted. */
  take(image: Image): CloudImage | undefined;
  /** Native ids adopted so far. */
  adopted: Set<string>;
}

/**
 * The cloud's own images that may be adopted, indexed by checksum: a match always shares the value
 * of the algorithm that decides (sameContent), so only images sharing one of the catalog image's
 * checksums are compared (a scan of every unmarked image per catalog image was quadratic).
 */
function adoptionCandidates(unmarked: readonly CloudImage[]): Adoption {
  const adopted = new Set<string>();
  let index: Map<string, number[]> | undefined;
  const build = () => {
    const byChecksum = new Map<string, number[]>();
    unmarked.forEach((u, i) => {
      if (u.state !== 'active' || u.hidden) return;
      for (const algorithm of contentAlgorithms) {
        const value = u.checksums[algorithm];
        if (!value) continue;
        const key = `${algorithm}:${value}`;
        const list = byChecksum.get(key);
        if (list) list.push(i);
        else byChecksum.set(key, [i]);
      }
    });
    return byChecksum;
  };
  const take = (image: Image) => {
    index ??= build();
    let best = -1;
    for (const algorithm of contentAlgorithms) {
      const value = image.checksums[algorithm];
      if (!value) continue;
      for (const i of index.get(`${algorithm}:${value}`) ?? []) {
        if (best !== -1 && i >= best) break;
        if (!adopted.has(unmarked[i]!.nativeId) && sameContent(unmarked[i]!, image)) {
          best = i;
          break;
        }
      }
    }
    if (best === -1) return undefined;
    const found = unmarked[best]!;
    adopted.add(found.nativeId);
    return found;
  };
  return { take, adopted };
}

type Step = { action: Omit<RetireAction, 'claim'> | undefined } | { note: string; flags?: { deferred: true } };

interface LegacyClaims {
  /** Native ids of older-scheme copies this target claims. */
  claimed: Set<string>;
  /** Catalog images this target selects but leaves alone: an older-scheme copy of them has no single claimant. */
  blocked: Set<string>;
}

/**
 * Which copies of the older marker scheme (this agent, no target) this target claims: those
 * whose catalog image this target selects and no rival (another target of this agent that sees
 * the same images) selects. Copies that several targets select, or none, are left alone and
 * noted; while one is, the target leaves that catalog image alone too, rather than upload a
 * second copy beside it.
 */
function claimLegacy(
  input: PlanInput,
  live: readonly CloudImage[],
  wanted: readonly Wanted[],
  notes: Note[],
): LegacyClaims {
  const claimed = new Set<string>();
  const blocked = new Set<string>();
  const copies = live.filter((i) => i.markers?.agent === input.agentId && i.markers.target === undefined);
  if (copies.length === 0) return { claimed, blocked };
  // The catalog and wanted records of these copies' images only: one pass over each.
  const ids = new Set(copies.map((c) => c.markers!.imageId));
  const desiredIds = new Set<string>();
  for (const w of wanted) if (ids.has(w.image.id)) desiredIds.add(w.image.id);
  const rivals = (input.rivals ?? []).map((r) => ({ name: r.name, selects: selectorFor(r.policy, r.name) }));
  // Catalog records are read to ask the rivals, or to word the note on a copy this target does not want.
  const needed = rivals.length > 0 ? ids : new Set([...ids].filter((id) => !desiredIds.has(id)));
  const catalogById = new Map<string, Image>();
  if (needed.size > 0) for (const image of input.catalog) if (needed.has(image.id)) catalogById.set(image.id, image);
  for (const copy of copies) {
    const imageId = copy.markers!.imageId;
    const catalogImage = catalogById.get(imageId);
    const wanting = catalogImage ? rivals.filter((r) => r.selects(catalogImage)).map((r) => r.name) : [];
    const mine = desiredIds.has(imageId);
    if (mine && wanting.length === 0) {
      claimed.add(copy.nativeId);
      continue;
    }
    const note = (why: string) => {
      const message = `made by this agent before markers named their target; ${why}`;
      notes.push({ nativeId: copy.nativeId, name: copy.name, message, warn: true });
    };
    if (mine) {
      blocked.add(imageId);
      const all = [input.target, ...wanting].join(', ');
      note(
        `left alone, and its catalog image not copied here: targets ${all} all select it and see this copy ` +
          '(select it for one of them only)',
      );
    } else if (wanting.length === 0) {
      const what = catalogImage ? 'its catalog image' : `catalog image ${imageId} (gone from the catalog)`;
      note(
        `left alone: no target that sees it selects ${what} ` +
          '(select it for one target to have it claimed, or remove it by hand)',
      );
    } else if (wanting.length > 1) {
      note(`left alone: targets ${wanting.join(', ')} all select it and see this copy`);
    }
    // Exactly one rival selects it: that rival claims it.
  }
  return { claimed, blocked };
}

/** The next step of retiring one of our copies, per policy; nothing when it is already done. */
function retireStep(
  copy: CloudImage,
  reason: string,
  policy: SyncPolicy,
  caps: DriverCapabilities,
  retiredSince: ReadonlyMap<string, string>,
  now: Date,
  immediateDelete: boolean,
  forced?: RetireMode,
): Step {
  const base = {
    kind: 'retire' as const,
    nativeId: copy.nativeId,
    name: copy.name,
    ...(copy.markers ? { imageId: copy.markers.imageId } : {}),
    reason,
  };
  const mode = immediateDelete ? 'delete' : (forced ?? policy.retire.mode);
  if (mode === 'hide')
    return copy.hidden ? { action: undefined } : { action: { ...base, mode: 'hide', startsGrace: false } };
  if (mode === 'disable')
    return copy.state === 'disabled'
      ? { action: undefined }
      : { action: { ...base, mode: 'disable', startsGrace: false } };
  const since = retiredSince.get(copy.nativeId);
  const graceOver =
    immediateDelete ||
    policy.retire.grace === 0 ||
    (since !== undefined && Date.parse(since) + policy.retire.grace <= now.getTime());
  if (graceOver) {
    // Whatever the driver claims to detect: an image reported in use is never deleted.
    if (copy.inUse) {
      return { note: `${reason}: deletion deferred while it is in use by VMs`, flags: { deferred: true } };
    }
    return { action: { ...base, mode: 'delete', startsGrace: false } };
  }
  // In its grace period: take it out of sight first (hide, or disable where hiding is not possible).
  const soft: RetireMode | undefined = caps.retireModes.includes('hide')
    ? 'hide'
    : caps.retireModes.includes('disable')
      ? 'disable'
      : undefined;
  const softDone = soft === 'hide' ? copy.hidden : soft === 'disable' ? copy.state === 'disabled' : true;
  if (since === undefined || !softDone) {
    if (soft === undefined || softDone) return { action: { ...base, mode: 'delete', startsGrace: true } };
    return { action: { ...base, mode: soft, startsGrace: since === undefined } };
  }
  return { note: `${reason}: deleted after the grace period (retired since ${since})` };
}

/** What differs between our copy and what it should be (the metadata we own). */
function differences(copy: CloudImage, w: Wanted, caps: DriverCapabilities): string[] {
  const changes: string[] = [];
  if (copy.markers!.revision !== w.image.revision)
    changes.push(`revision ${copy.markers!.revision} -> ${w.image.revision}`);
  if (copy.name !== w.name) changes.push(`name "${copy.name}" -> "${w.name}"`);
  if (copy.access !== w.access) changes.push(`access ${copy.access} -> ${w.access}`);
  if (caps.properties) lifecycleChanges(copy, w, changes);
  return changes;
}

/** Among good copies, keep the one already up to date (markers naming the target count), else the newest. */
function preferKeep(w: Wanted, caps: DriverCapabilities): (a: CloudImage, b: CloudImage) => number {
  const score = (c: CloudImage) => differences(c, w, caps).length + (c.markers!.target === undefined ? 1 : 0);
  return (a, b) =>
    score(a) - score(b) || (b.createdAt ?? '').localeCompare(a.createdAt ?? '') || a.nativeId.localeCompare(b.nativeId);
}

/** Same bits: equal size and an equal checksum of an algorithm both sides know. */
export function sameContent(cloud: CloudImage, image: Image): boolean {
  if (cloud.size !== undefined && image.size !== undefined && cloud.size !== image.size) return false;
  for (const algorithm of contentAlgorithms) {
    const a = cloud.checksums[algorithm];
    const b = image.checksums[algorithm];
    if (a && b) return a === b;
  }
  return false;
}

/** The algorithms sameContent compares, the one that decides first. */
const contentAlgorithms = ['sha512', 'sha256', 'md5'] as const satisfies readonly (keyof Checksums)[];

const rank: Record<Action['kind'], number> = {
  cleanup: 0,
  create: 1,
  replace: 1,
  adopt: 1,
  update: 2,
  import: 3,
  retire: 4,
};

/**
 * Cleanups first (space), kernels and ramdisks before machines (references), retirements last;
 * in planning order otherwise. A stable bucket per (rank, kernel first), not a sort of every action.
 */
function order(actions: Action[]): Action[] {
  const buckets: Action[][] = Array.from({ length: 10 }, () => []);
  for (const a of actions) {
    const kernelFirst = 'desired' in a && a.desired.image.type !== 'machine' ? 0 : 1;
    buckets[rank[a.kind] * 2 + kernelFirst]!.push(a);
  }
  return buckets.flat();
}
