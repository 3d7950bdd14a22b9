import type { SyncPolicy } from '../../core/config/sync-policy.js';
import { shareDelta } from '../../core/iaas/kit/sharing.js';
import type { Claim } from '../../core/iaas/markers.js';
import type { CloudImage, DriverCapabilities, ShareMember } from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import { selectorFor } from './desired.js';
import type { Note } from './planner.js';

/**
 * The sharing step of the planner, pure like the planner: for each of this target's copies, who
 * should have it (the catalog image's members mapped through `sync.sharing.members`, plus
 * `sync.sharing.shareWith`), who has it (the cloud's member listing) and who visor added earlier
 * (the agent's records) give the members to add and the ones to remove. Members visor did not
 * add are never removed; an image that is not `shared` in the catalog is shared with nobody;
 * a copy that is retired or no longer selected loses the members visor gave it.
 */

/** What the agent keeps per shared copy (catalog state `share:<target>:<nativeId>`). */
export interface ShareRecord {
  imageId: string;
  name: string;
  /** Principals visor added and has not removed: the only ones it may remove. */
  managed: string[];
  /** The members as last read from the cloud, with the state of each membership. */
  members: ShareMember[];
  /** Catalog members with no principal in this target's mapping (not shared with, reported). */
  unmapped: string[];
  at: string;
}

export const shareKey = (target: string, nativeId: string) => `share:${target}:${nativeId}`;

export interface ShareAction {
  kind: 'share';
  imageId: string;
  name: string;
  nativeId: string;
  wanted: string[];
  managed: string[];
  add: string[];
  remove: string[];
  unmapped: string[];
  claim: Claim;
}

export interface SharePlanInput {
  target: string;
  agentId: string;
  policy: SyncPolicy;
  capabilities: DriverCapabilities;
  catalog: readonly Image[];
  observed: readonly CloudImage[];
  /** Members of the copies `sharingCandidates` named, as read from the cloud. */
  members: ReadonlyMap<string, readonly ShareMember[]>;
  records: ReadonlyMap<string, ShareRecord>;
}

export interface SharePlan {
  actions: ShareAction[];
  notes: Note[];
  /** Per copy looked at: who it should be shared with, and who could not be mapped (for the records). */
  wanted: Map<string, { imageId: string; name: string; wanted: string[]; unmapped: string[]; dormant: boolean }>;
}

/** This target's own copies (markers name this agent and target): the only ones whose sharing is touched. */
function ownCopies(input: Pick<SharePlanInput, 'observed' | 'agentId' | 'target'>): CloudImage[] {
  return input.observed.filter(
    (c) => c.state !== 'deleted' && c.markers?.agent === input.agentId && c.markers.target === input.target,
  );
}

/** Who the catalog image should be shared with here, and which of its members have no mapping. */
export function wantedPrincipals(
  image: Image | undefined,
  policy: SyncPolicy,
): { wanted: string[]; unmapped: string[] } {
  // Shared in the cloud only when shared in the catalog and the policy keeps it shared: never wider.
  if (image?.access !== 'shared' || policy.visibility.shared !== 'shared') {
    return { wanted: [], unmapped: [] };
  }
  const { members, shareWith } = policy.sharing;
  const wanted = new Set(shareWith);
  const unmapped: string[] = [];
  for (const member of image.members) {
    const mapped = members[member];
    if (mapped === undefined) unmapped.push(member);
    else for (const principal of typeof mapped === 'string' ? [mapped] : mapped) wanted.add(principal);
  }
  return { wanted: [...wanted].sort(), unmapped: unmapped.sort() };
}

/**
 * The copies whose members must be read before planning: those that should be shared with
 * someone, and those visor shared earlier (their members may have to go).
 */
export function sharingCandidates(input: Omit<SharePlanInput, 'members'>): CloudImage[] {
  if (!input.capabilities.sharing) return [];
  const byId = new Map(input.catalog.map((image) => [image.id, image]));
  const selected = selectorFor(input.policy, input.target);
  return ownCopies(input).filter((copy) => {
    const image = byId.get(copy.markers!.imageId);
    const live = image !== undefined && selected(image) && !copy.hidden && copy.state === 'active';
    const wanted = live ? wantedPrincipals(image, input.policy).wanted : [];
    return wanted.length > 0 || (input.records.get(copy.nativeId)?.managed.length ?? 0) > 0;
  });
}

export function planSharing(input: SharePlanInput): SharePlan {
  const actions: ShareAction[] = [];
  const notes: Note[] = [];
  const wantedBy: SharePlan['wanted'] = new Map();
  const byId = new Map(input.catalog.map((image) => [image.id, image]));
  const selected = selectorFor(input.policy, input.target);
  const sharing = input.capabilities.sharing;
  for (const copy of ownCopies(input)) {
    const image = byId.get(copy.markers!.imageId);
    // A retired copy (hidden, disabled) or one no longer selected keeps no member visor gave it.
    const live = image !== undefined && selected(image) && !copy.hidden && copy.state === 'active';
    const { wanted, unmapped } = live ? wantedPrincipals(image, input.policy) : { wanted: [], unmapped: [] };
    const note = (message: string, warn = false) =>
      notes.push({ nativeId: copy.nativeId, name: copy.name, message, ...(warn ? { warn } : {}) });
    if (unmapped.length > 0) {
      note(`not shared with ${unmapped.join(', ')}: no principal for them in sync.sharing.members`, true);
    }
    if (!sharing) {
      if (wanted.length > 0) {
        note(`cannot share with ${wanted.join(', ')}: this cloud cannot share images; the copy stays private`, true);
      }
      continue;
    }
    const record = input.records.get(copy.nativeId);
    const managed = record?.managed ?? [];
    if (wanted.length === 0 && managed.length === 0) continue;
    // Where members need a `shared` image (Glance), those of a copy made private are out of effect
    // but kept by the cloud: they stay visor's in the records, to be removed if it is shared again.
    const dormant = input.capabilities.access.includes('shared') && copy.access !== 'shared';
    wantedBy.set(copy.nativeId, { imageId: copy.markers!.imageId, name: copy.name, wanted, unmapped, dormant });
    if (sharing.maxPrincipals !== undefined && wanted.length > sharing.maxPrincipals) {
      const most = `${sharing.maxPrincipals} ${sharing.principal}(s)`;
      note(`cannot share with ${wanted.join(', ')}: an image can be shared with at most ${most} here`, true);
      continue;
    }
    const present = input.members.get(copy.nativeId) ?? [];
    const { add, remove } = shareDelta(
      present.map((m) => m.principal),
      { wanted, managed },
    );
    const pending = present.filter((m) => m.status === 'pending' && wanted.includes(m.principal));
    if (pending.length > 0) note(`pending acceptance by ${pending.map((m) => m.principal).join(', ')}`);
    if (add.length === 0 && remove.length === 0) continue;
    actions.push({
      kind: 'share',
      imageId: copy.markers!.imageId,
      name: copy.name,
      nativeId: copy.nativeId,
      wanted,
      managed,
      add,
      remove,
      unmapped,
      claim: { owner: 'target', agent: input.agentId, target: input.target, imageId: copy.markers!.imageId },
    });
  }
  return { actions, notes, wanted: wantedBy };
}

export function describeShare(action: ShareAction): string {
  const parts = [
    ...(action.add.length > 0 ? [`share with ${action.add.join(', ')}`] : []),
    ...(action.remove.length > 0 ? [`stop sharing with ${action.remove.join(', ')}`] : []),
  ];
  return parts.join('; ');
}
