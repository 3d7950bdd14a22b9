import { VisorError } from '../errors.js';
import type { Deprecation, DeprecationState, Image, ImageChanges } from './model.js';

/**
 * The deprecation machine (GCE's deprecate, AWS DeprecateAt, Azure end-of-life), beside the bits
 * machine of lifecycle.ts: active -> deprecated (usable, flagged, a replacement named) ->
 * obsolete (hidden or disabled for new launches) -> deleted (soft: restorable until purged).
 * Each later step may be scheduled by date; a date takes effect once it has passed, whether or
 * not anyone has written the new state yet: `lifeOf` is what every reader (planner, API) uses.
 */
export type LifeState = 'active' | DeprecationState | 'deleted';

export interface Life {
  state: LifeState;
  /** Why, in words for plans and status: "deprecated since ...", "obsolete since ...". */
  reason: string;
  /** A scheduled deletion that is due but held back, and why (the image is protected). */
  held?: string;
}

const passed = (date: string | undefined, now: Date) => date !== undefined && Date.parse(date) <= now.getTime();

/** The state an image is in at `now`, its schedule applied. */
export function lifeOf(image: Image, now: Date): Life {
  if (image.status === 'deleted')
    return { state: 'deleted', reason: `deleted${image.deletedAt ? ` on ${image.deletedAt}` : ''}` };
  const d = image.deprecation;
  if (!d) return { state: 'active', reason: 'active' };
  const replaced = d.replacement ? ` (replaced by ${d.replacement})` : '';
  if (passed(d.deleteOn, now)) {
    if (!image.protected) return { state: 'deleted', reason: `deletion scheduled for ${d.deleteOn}${replaced}` };
    const held = `deletion scheduled for ${d.deleteOn} held back: the image is protected`;
    return { state: d.state === 'obsolete' || passed(d.obsoleteOn, now) ? 'obsolete' : d.state, reason: held, held };
  }
  if (d.state === 'obsolete') return { state: 'obsolete', reason: `obsolete since ${d.since}${replaced}` };
  if (passed(d.obsoleteOn, now)) return { state: 'obsolete', reason: `obsolete since ${d.obsoleteOn}${replaced}` };
  return { state: 'deprecated', reason: `deprecated since ${d.since}${replaced}` };
}

export interface DeprecateRequest {
  /** `deprecated` (the default) or straight to `obsolete`. */
  state?: DeprecationState;
  replacement?: string;
  obsoleteOn?: string;
  deleteOn?: string;
}

/**
 * The change that deprecates `image` (again: a second call replaces the schedule). A deleted image
 * cannot be deprecated (restore it first); dates must come in their order.
 */
export function deprecate(image: Image, request: DeprecateRequest, now: Date): ImageChanges {
  if (image.status === 'deleted') {
    throw new VisorError('conflict', `image ${image.id} is deleted; restore it before deprecating it`, {
      details: { id: image.id },
    });
  }
  if (request.replacement === image.id) {
    throw new VisorError('invalidInput', `image ${image.id} cannot replace itself`, {
      details: { replacement: request.replacement },
    });
  }
  for (const key of ['obsoleteOn', 'deleteOn'] as const) {
    const value = request[key];
    if (value !== undefined && Number.isNaN(Date.parse(value))) {
      throw new VisorError('invalidInput', `${key} must be a date or date-time, got "${value}"`, {
        details: { [key]: value },
      });
    }
  }
  const obsoleteOn = request.obsoleteOn === undefined ? undefined : new Date(request.obsoleteOn).toISOString();
  const deleteOn = request.deleteOn === undefined ? undefined : new Date(request.deleteOn).toISOString();
  if (obsoleteOn && deleteOn && Date.parse(deleteOn) < Date.parse(obsoleteOn)) {
    throw new VisorError(
      'invalidInput',
      `the deletion date (${deleteOn}) comes before the obsolete date (${obsoleteOn})`,
    );
  }
  const state = request.state ?? 'deprecated';
  // Deprecating again keeps when it all began; only the schedule and the replacement change.
  const since = image.deprecation?.since ?? now.toISOString();
  const deprecation: Deprecation = {
    state: image.deprecation?.state === 'obsolete' && request.state === undefined ? 'obsolete' : state,
    since,
    ...(request.replacement ? { replacement: request.replacement } : {}),
    ...(obsoleteOn ? { obsoleteOn } : {}),
    ...(deleteOn ? { deleteOn } : {}),
  };
  return { deprecation };
}

/** The change that makes a deprecated or obsolete image active again. */
export function undeprecate(image: Image): ImageChanges {
  if (image.status === 'deleted') {
    throw new VisorError('conflict', `image ${image.id} is deleted; restore it first`, { details: { id: image.id } });
  }
  if (!image.deprecation)
    throw new VisorError('conflict', `image ${image.id} is not deprecated`, { details: { id: image.id } });
  return { deprecation: null };
}

/**
 * What the schedule asks to write at `now` (the sweeper applies it): obsolete once its date has
 * passed; a soft deletion once its date has passed (never for a protected image). Undefined
 * when nothing is due.
 */
export function dueChange(image: Image, now: Date, softDeleteMs: number): ImageChanges | undefined {
  const life = lifeOf(image, now);
  if (life.state === 'deleted' && image.status !== 'deleted') return softDelete(now, softDeleteMs);
  if (life.state === 'obsolete' && image.deprecation?.state === 'deprecated') {
    return { deprecation: { ...image.deprecation, state: 'obsolete' } };
  }
  return undefined;
}

/**
 * How long a deleted image is kept, bits included, restorable with `visor restore`, unless
 * configured otherwise (`lifecycle.softDelete`; 0 deletes at once): a week, the safety net a
 * mistaken `visor delete` or a wrong `--delete-on` date needs.
 */
export const defaultSoftDeleteMs = 7 * 24 * 60 * 60 * 1000;

/** The change that deletes an image softly: kept, bits included, for `softDeleteMs`. */
export function softDelete(now: Date, softDeleteMs: number): ImageChanges {
  return {
    status: 'deleted',
    deletedAt: now.toISOString(),
    purgeAfter: new Date(now.getTime() + softDeleteMs).toISOString(),
  };
}

/** Whether a deleted image's keeping period is over. */
export function purgeDue(image: Image, now: Date): boolean {
  return (
    image.status === 'deleted' && (image.purgeAfter === undefined || Date.parse(image.purgeAfter) <= now.getTime())
  );
}

/**
 * Properties a cloud copy carries to show its life cycle in the cloud's own listing (written by
 * the agent's planner; adapters may give them the cloud's own spelling, as OpenNebula does).
 */
export const lifecycleProperties = {
  state: 'visor_lifecycle',
  replacement: 'visor_replacement',
  replacementId: 'visor_replacement_id',
  since: 'visor_deprecated_since',
  obsoleteOn: 'visor_obsolete_on',
  deleteOn: 'visor_delete_on',
  family: 'visor_family',
  familyLatest: 'visor_family_latest',
} as const;
export const lifecyclePropertyKeys: readonly string[] = Object.values(lifecycleProperties);
