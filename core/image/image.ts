import { randomUUID } from 'node:crypto';
import { ValidationError, VisorError } from '../errors.js';
import { zodIssues } from '../validation.js';
import { canTransition } from './lifecycle.js';
import type { Image, ImageChanges, ImageDraft } from './model.js';
import { imageChangesSchema, imageDraftSchema, imageSchema } from './schema.js';

export interface Clock {
  now(): Date;
}
export const systemClock: Clock = { now: () => new Date() };

/** Checks a whole image; every bad field is named in one ValidationError. */
export function validateImage(value: unknown, subject = 'invalid image'): Image {
  const result = imageSchema.safeParse(value);
  if (!result.success) throw new ValidationError('invalidInput', subject, zodIssues(result.error));
  return result.data as Image;
}

/**
 * Builds a complete image from a draft: defaults, a fresh id, timestamps, revision 1. A new image
 * is private unless the draft says otherwise (as in Glance): the default sync selector
 * (`access: [public]`) then sends none to a cloud until someone makes it public.
 */
export function newImage(draft: ImageDraft, clock: Clock = systemClock): Image {
  const parsed = imageDraftSchema.safeParse(draft);
  if (!parsed.success) throw new ValidationError('invalidInput', 'invalid image', zodIssues(parsed.error));
  const now = clock.now().toISOString();
  return validateImage({
    type: 'machine',
    access: 'private',
    members: [],
    status: 'locked',
    checksums: {},
    tags: [],
    properties: {},
    ...stripUndefined(parsed.data as Record<string, unknown>),
    id: (parsed.data as { id?: string }).id ?? randomUUID(),
    createdAt: now,
    updatedAt: now,
    revision: 1,
  });
}

/**
 * Applies a change set to an image and returns the next revision. Pure: both catalogs call it,
 * so their semantics cannot drift apart.
 */
export function applyChanges(current: Image, changes: ImageChanges, clock: Clock = systemClock): Image {
  const parsed = imageChangesSchema.safeParse(changes);
  if (!parsed.success) throw new ValidationError('invalidInput', 'invalid change', zodIssues(parsed.error));
  const next: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(parsed.data)) {
    if (value === undefined) continue;
    if (key === 'properties') {
      const props: Record<string, string> = { ...current.properties };
      for (const [name, v] of Object.entries(value as Record<string, string | null>)) {
        if (v === null) delete props[name];
        else props[name] = v;
      }
      next['properties'] = props;
    } else if (value === null) {
      delete next[key];
    } else {
      next[key] = value;
    }
  }
  const status = next['status'] as Image['status'];
  if (!canTransition(current.status, status)) {
    throw new VisorError('conflict', `image ${current.id} cannot go from ${current.status} to ${status}`, {
      details: { id: current.id, from: current.status, to: status },
    });
  }
  next['updatedAt'] = laterOf(clock.now().toISOString(), current.updatedAt);
  next['revision'] = current.revision + 1;
  return validateImage(next);
}

function stripUndefined(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
}

// updatedAt never goes backwards, even if the clock does: consumers use it for change detection.
function laterOf(a: string, b: string): string {
  return Date.parse(a) >= Date.parse(b) ? a : b;
}
