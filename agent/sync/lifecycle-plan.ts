import type { SyncPolicy } from '../../core/config/sync-policy.js';
import type { CloudImage, DriverCapabilities, RetireMode } from '../../core/iaas/port.js';
import { lifeOf, lifecycleProperties as keys } from '../../core/image/deprecation.js';
import type { Access, Image } from '../../core/image/model.js';
import { type DesiredImage, mapAccess, nameRenderer, targetFormat } from './desired.js';

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

/**
 * A catalog image this cloud should hold, as the planner compares it with the copies: its name
 * and access here and the life cycle properties its copy shows. The full desired record (a copy
 * of the catalog image, `desiredOf`) is made only for the images that get an action: copying
 * every selected image was most of the garbage, and of the time, of planning 100,000 images.
 */
export interface Wanted {
  /** The catalog image, untouched. */
  image: Image;
  /** Its name in this cloud (the naming template, or the family's latest name). */
  name: string;
  /** Its access level in this cloud (never wider than the catalog's). */
  access: Access;
  /** Life cycle properties over the image's own (deprecation, family, latest); undefined when none. */
  lifecycle: Record<string, string> | undefined;
}

/** What the cloud should hold for `w`: the catalog image with its name, access and properties for this cloud. */
export function desiredOf(w: Wanted, policy: SyncPolicy, capabilities: DriverCapabilities): DesiredImage {
  const properties = w.lifecycle ? { ...w.image.properties, ...w.lifecycle } : { ...w.image.properties };
  return {
    image: { ...w.image, name: w.name, access: w.access, members: [], properties },
    ...targetFormat(w.image, policy, capabilities),
  };
}

/** A property the copy of `w` should show. */
export function wantedProperty(w: Wanted, key: string): string | undefined {
  const value = w.lifecycle?.[key];
  return value !== undefined ? value : w.image.properties[key];
}

export interface LifecycleView {
  /** The catalog images this cloud should hold, in catalog order (a family's previous latest held last). */
  wanted: Wanted[];
  /** The other catalog images (not selected, leaving, or not copied), in catalog order. */
  unwanted: Image[];
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

/** Sets `key` unless present: the first of several entries wins, as a scan from the start would find it. */
function setFirst<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (!map.has(key)) map.set(key, value);
}

export function lifecycleView(input: LifecycleInput): LifecycleView {
  const { policy, capabilities, now } = input;
  const departures = new Map<string, Departure>();
  const guarded = new Map<string, string>();
  const notes: LifecycleNote[] = [];
  const ours: CloudImage[] = [];
  for (const c of input.observed) {
    if (c.markers?.agent === input.agentId && c.markers.target === input.target && c.state !== 'deleted') ours.push(c);
  }
  const usable = (c: CloudImage) => c.state === 'active' && !c.hidden;
  // The first usable copy of each image, indexed on first use (a scan of the listing per lookup was quadratic).
  let usableCopies: Map<string, CloudImage> | undefined;
  const copyOf = (imageId: string) => {
    if (!usableCopies) {
      usableCopies = new Map();
      for (const c of ours) if (usable(c)) setFirst(usableCopies, c.markers!.imageId, c);
    }
    return usableCopies.get(imageId);
  };
  const soft = obsoleteMode(policy, capabilities);

  const kept: Image[] = [];
  const unwanted: Image[] = [];
  for (const image of input.catalog) {
    if (image.protected) guarded.set(image.id, 'the image is protected');
    const selected = input.selected(image);
    // Most images have no schedule: active, without building their life (lifeOf) one by one.
    if (!image.deprecation && image.status !== 'deleted') {
      if (selected) kept.push(image);
      else unwanted.push(image);
      continue;
    }
    const life = lifeOf(image, now);
    if (life.held && selected) notes.push({ imageId: image.id, message: life.held });
    if (life.state === 'deleted' || !selected || (life.state === 'obsolete' && soft !== undefined)) {
      unwanted.push(image);
    }
    if (life.state === 'deleted') {
      departures.set(image.id, { how: 'delete', reason: life.reason });
      continue;
    }
    if (!selected) continue;
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

  const render = nameRenderer(policy.naming);
  // The access level depends on the catalog's level only: mapped once per level, not per image.
  const accessTable = new Map<string, Access | undefined>();
  const accessOf = (access: Access) => {
    if (!accessTable.has(access)) accessTable.set(access, mapAccess(access, policy, capabilities));
    return accessTable.get(access);
  };
  const latestName = policy.families.latestName;
  const wanted: Wanted[] = [];
  for (const image of kept) {
    if (families.beyondKeep.size > 0 && families.beyondKeep.has(image.id)) {
      unwanted.push(image);
      continue;
    }
    const access = accessOf(image.access);
    if (access === undefined) {
      unwanted.push(image);
      // Access is never widened: an image whose level the cloud lacks is not copied, and says so.
      const levels = capabilities.access.join(', ');
      const wantedLevel = policy.visibility[image.access];
      const message = `not copied: access ${wantedLevel} would be widened (the cloud offers ${levels} only)`;
      notes.push({ imageId: image.id, message, warn: true });
      continue;
    }
    let name = render(image);
    let lifecycle = image.deprecation ? lifecycleProperties(image, now, copyOf) : undefined;
    if (image.family) {
      lifecycle ??= {};
      lifecycle[FAMILY] = image.family;
      if (families.latest.get(image.family) === image.id) {
        lifecycle[FAMILY_LATEST] = 'true';
        if (latestName) name = renderFamilyName(latestName, image.family);
      }
    }
    wanted.push({ image, name, access, lifecycle });
  }
  if (families.latest.size > 0) holdPreviousLatest();
  return { wanted, unwanted, departures, guarded, notes };

  /** The previous latest keeps its name and flag until the new latest's copy is there and usable. */
  function holdPreviousLatest(): void {
    // Our usable copies flagged latest, by family (one pass, not one scan of the listing per family).
    const flagged = new Map<string, CloudImage[]>();
    for (const c of ours) {
      const properties = c.metadata.properties;
      if (!usable(c) || properties?.[FAMILY_LATEST] !== 'true') continue;
      const family = properties[FAMILY];
      if (family === undefined) continue;
      const list = flagged.get(family);
      if (list) list.push(c);
      else flagged.set(family, [c]);
    }
    if (flagged.size === 0) return;
    const wantedById = new Map<string, Wanted>();
    for (const w of wanted) setFirst(wantedById, w.image.id, w);
    const keptById = new Map<string, Image>();
    for (const image of kept) setFirst(keptById, image.id, image);
    for (const [family, newest] of families.latest) {
      const ready = copyOf(newest);
      const readyName = latestName ? renderFamilyName(latestName, family) : undefined;
      const isReady =
        ready !== undefined &&
        ready.metadata.properties?.[FAMILY_LATEST] === 'true' &&
        (readyName === undefined || ready.name === readyName);
      const previous = (flagged.get(family) ?? []).filter((c) => c.markers!.imageId !== newest);
      if (isReady || previous.length === 0) continue;
      for (const copy of previous) {
        const id = copy.markers!.imageId;
        const w = wantedById.get(id);
        const message = `stays the latest of family ${family} until the copy of ${newest} is usable here`;
        if (w) {
          w.lifecycle ??= {};
          w.lifecycle[FAMILY_LATEST] = 'true';
          if (readyName) w.name = readyName;
          notes.push({ imageId: id, message });
        } else if (departures.get(id)?.how !== 'delete') {
          // Leaving (beyond keep, obsolete): it leaves once the new latest can take over.
          departures.delete(id);
          guarded.set(id, message);
          notes.push({ imageId: id, message });
          const image = keptById.get(id);
          const access = image ? accessOf(image.access) : undefined;
          if (image && access !== undefined) {
            const lifecycle = { ...lifecycleProperties(image, now, copyOf), [FAMILY]: family, [FAMILY_LATEST]: 'true' };
            const held: Wanted = { image, name: readyName ?? render(image), access, lifecycle };
            wanted.push(held);
            setFirst(wantedById, id, held);
          }
        }
      }
    }
  }
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

const none: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Life cycle properties that differ between a copy and what it should show (they change without a
 * new revision), added to `changes`.
 */
export function lifecycleChanges(copy: CloudImage, w: Wanted, changes: string[] = []): string[] {
  const has = copy.metadata.properties ?? none;
  for (const key of lifecycleKeys) {
    const wants = wantedProperty(w, key);
    if ((has[key] ?? '') !== (wants ?? '')) changes.push(`${key} ${has[key] ?? '(none)'} -> ${wants ?? '(none)'}`);
  }
  return changes;
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
