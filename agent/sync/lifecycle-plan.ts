import type { SyncPolicy } from '../../core/config/sync-policy.js';
import type { CloudImage, DriverCapabilities, RetireMode } from '../../core/iaas/port.js';
import { lifeOf, lifecycleProperties as keys } from '../../core/image/deprecation.js';
import type { Image } from '../../core/image/model.js';
import { desiredFor, type DesiredImage } from './desired.js';

/**
 * What the image life cycle asks of one cloud, before the planner matches it with the listing:
 * which catalog images the cloud should have (deprecated ones flagged, a family's latest named),
 * which should go and how (obsolete: out of sight; deleted: removed), and which visor must never
 * hide or remove (protected). Pure, like the planner.
 */

/** Properties every copy carries to show its life cycle in the cloud's own listing. */
const LIFECYCLE = keys.state;
const REPLACEMENT = keys.replacement;
const REPLACEMENT_ID = keys.replacementId;
const DEPRECATED_SINCE = keys.since;
const OBSOLETE_ON = keys.obsoleteOn;
const DELETE_ON = keys.deleteOn;
const FAMILY = keys.family;
const FAMILY_LATEST = keys.familyLatest;

export interface Departure {
  /** `soft`: hidden or disabled (obsolete); `delete`: removed (deleted); `policy`: the target's retire policy. */
  how: 'soft' | 'delete' | 'policy';
  reason: string;
}

export interface LifecycleNote {
  imageId: string;
  message: string;
  /** Shown as a warning: something the operator asked for is not done. */
  warn?: boolean;
}

export interface LifecycleView {
  desired: DesiredImage[];
  /** Catalog image id -> why and how its copies leave this cloud. */
  departures: Map<string, Departure>;
  /** Catalog image id -> why its copies are not hidden, disabled or deleted now (protected, a family's latest). */
  guarded: Map<string, string>;
  notes: LifecycleNote[];
}

export interface LifecycleInput {
  target: string;
  agentId: string;
  policy: SyncPolicy;
  capabilities: DriverCapabilities;
  catalog: readonly Image[];
  observed: readonly CloudImage[];
  now: Date;
  selected: (image: Image) => boolean;
}

/** The soft way out a cloud offers for obsolete images, per policy; undefined when it has none. */
export function obsoleteMode(policy: SyncPolicy, caps: DriverCapabilities): RetireMode | undefined {
  const order: RetireMode[] = policy.lifecycle.obsolete === 'disable' ? ['disable', 'hide'] : ['hide', 'disable'];
  return order.find((mode) => caps.retireModes.includes(mode));
}

export function lifecycleView(input: LifecycleInput): LifecycleView {
  const { policy, capabilities, now } = input;
  const departures = new Map<string, Departure>();
  const guarded = new Map<string, string>();
  const notes: LifecycleNote[] = [];
  const ours = input.observed.filter(
    (c) => c.markers?.agent === input.agentId && c.markers.target === input.target && c.state !== 'deleted',
  );
  const usable = (c: CloudImage) => c.state === 'active' && !c.hidden;
  const copyOf = (imageId: string) => ours.find((c) => c.markers!.imageId === imageId && usable(c));
  const soft = obsoleteMode(policy, capabilities);

  const kept: Image[] = [];
  for (const image of input.catalog) {
    if (image.protected) guarded.set(image.id, 'the image is protected');
    const life = lifeOf(image, now);
    if (life.held && input.selected(image)) notes.push({ imageId: image.id, message: life.held });
    if (life.state === 'deleted') {
      departures.set(image.id, { how: 'delete', reason: life.reason });
      continue;
    }
    if (!input.selected(image)) continue;
    if (life.state === 'obsolete' && soft !== undefined) {
      departures.set(image.id, { how: 'soft', reason: life.reason });
      continue;
    }
    if (life.state === 'obsolete') {
      notes.push({
        imageId: image.id,
        message: `${life.reason}: this cloud can neither hide nor disable it (flagged only)`,
      });
    }
    kept.push(image);
  }

  const families = familyPlan(kept, policy, now);
  for (const [imageId, reason] of families.beyondKeep) departures.set(imageId, { how: 'policy', reason });

  const desired: DesiredImage[] = [];
  for (const image of kept) {
    if (families.beyondKeep.has(image.id)) continue;
    const d = desiredFor(image, policy, capabilities);
    if (!d) {
      // Access is never widened: an image whose level the cloud lacks is not copied, and says so.
      const levels = capabilities.access.join(', ');
      const wanted = policy.visibility[image.access];
      const message = `not copied: access ${wanted} would be widened (the cloud offers ${levels} only)`;
      notes.push({ imageId: image.id, message, warn: true });
      continue;
    }
    const properties = { ...d.image.properties, ...lifecycleProperties(image, now, copyOf) };
    if (image.family) {
      properties[FAMILY] = image.family;
      if (families.latest.get(image.family) === image.id) {
        properties[FAMILY_LATEST] = 'true';
        if (policy.families.latestName) d.image.name = renderFamilyName(policy.families.latestName, image.family);
      }
    }
    desired.push({ ...d, image: { ...d.image, properties } });
  }
  // The previous latest keeps its name and flag until the new latest's copy is there and usable.
  for (const [family, newest] of families.latest) {
    const ready = copyOf(newest);
    const readyName = policy.families.latestName ? renderFamilyName(policy.families.latestName, family) : undefined;
    const isReady =
      ready !== undefined &&
      ready.metadata.properties?.[FAMILY_LATEST] === 'true' &&
      (readyName === undefined || ready.name === readyName);
    const previous = ours.filter(
      (c) =>
        c.markers!.imageId !== newest &&
        usable(c) &&
        c.metadata.properties?.[FAMILY_LATEST] === 'true' &&
        c.metadata.properties?.[FAMILY] === family,
    );
    if (isReady || previous.length === 0) continue;
    for (const copy of previous) {
      const id = copy.markers!.imageId;
      const d = desired.find((x) => x.image.id === id);
      const message = `stays the latest of family ${family} until the copy of ${newest} is usable here`;
      if (d) {
        d.image.properties[FAMILY_LATEST] = 'true';
        if (readyName) d.image.name = readyName;
        notes.push({ imageId: id, message });
      } else if (departures.get(id)?.how !== 'delete') {
        // Leaving (beyond keep, obsolete): it leaves once the new latest can take over.
        departures.delete(id);
        guarded.set(id, message);
        notes.push({ imageId: id, message });
        const image = kept.find((k) => k.id === id);
        const held = image ? desiredFor(image, policy, capabilities) : undefined;
        if (image && held) {
          const properties = { ...held.image.properties, ...lifecycleProperties(image, now, copyOf) };
          properties[FAMILY] = family;
          properties[FAMILY_LATEST] = 'true';
          desired.push({ ...held, image: { ...held.image, name: readyName ?? held.image.name, properties } });
        }
      }
    }
  }
  return { desired, departures, guarded, notes };
}

/** The deprecation in properties, the replacement by its id in this cloud where it has a copy. */
function lifecycleProperties(
  image: Image,
  now: Date,
  copyOf: (imageId: string) => CloudImage | undefined,
): Record<string, string> {
  const d = image.deprecation;
  if (!d) return {};
  const life = lifeOf(image, now);
  const out: Record<string, string> = { [LIFECYCLE]: life.state, [DEPRECATED_SINCE]: d.since };
  if (d.replacement) {
    out[REPLACEMENT_ID] = d.replacement;
    out[REPLACEMENT] = copyOf(d.replacement)?.nativeId ?? d.replacement;
  }
  if (d.obsoleteOn) out[OBSOLETE_ON] = d.obsoleteOn;
  if (d.deleteOn) out[DELETE_ON] = d.deleteOn;
  return out;
}

const lifecycleKeys = [
  LIFECYCLE,
  REPLACEMENT,
  REPLACEMENT_ID,
  DEPRECATED_SINCE,
  OBSOLETE_ON,
  DELETE_ON,
  FAMILY,
  FAMILY_LATEST,
];

/** Life cycle properties that differ between a copy and what it should show (they change without a new revision). */
export function lifecycleChanges(copy: CloudImage, d: DesiredImage): string[] {
  const has = copy.metadata.properties ?? {};
  const wants = d.image.properties;
  return lifecycleKeys
    .filter((key) => (has[key] ?? '') !== (wants[key] ?? ''))
    .map((key) => `${key} ${has[key] ?? '(none)'} -> ${wants[key] ?? '(none)'}`);
}

export function renderFamilyName(template: string, family: string): string {
  return template.replace(/\{family\}/g, family);
}

interface FamilyPlan {
  /** Family -> the catalog id of its latest: the newest version neither deprecated nor held back. */
  latest: Map<string, string>;
  /** Versions older than the newest `keep`: image id -> reason. */
  beyondKeep: Map<string, string>;
}

/** Newest first: by when the bits arrived, then when the record was made, then id (stable). */
function newestFirst(a: Image, b: Image): number {
  const time = (i: Image) => i.uploadedAt ?? i.createdAt;
  return time(b).localeCompare(time(a)) || b.createdAt.localeCompare(a.createdAt) || a.id.localeCompare(b.id);
}

function familyPlan(images: readonly Image[], policy: SyncPolicy, now: Date): FamilyPlan {
  const latest = new Map<string, string>();
  const beyondKeep = new Map<string, string>();
  const byFamily = new Map<string, Image[]>();
  for (const image of images) {
    if (!image.family) continue;
    const list = byFamily.get(image.family) ?? [];
    list.push(image);
    byFamily.set(image.family, list);
  }
  for (const [family, versions] of byFamily) {
    versions.sort(newestFirst);
    const candidate = versions.find((v) => !v.excludeFromLatest && lifeOf(v, now).state === 'active');
    if (candidate) latest.set(family, candidate.id);
    const keep = policy.families.keep;
    if (keep === undefined) continue;
    for (const old of versions.slice(keep)) {
      if (old.id === candidate?.id) continue;
      beyondKeep.set(old.id, `older than the newest ${keep} of family ${family}`);
    }
  }
  return { latest, beyondKeep };
}
