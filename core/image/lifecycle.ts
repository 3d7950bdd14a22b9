import { VisorError } from '../errors.js';
import type { ImageStatus } from './model.js';

/**
 * The image status machine: the one place that says how an image's status moves. Catalogs check
 * every stored change against its edges (`canTransition`, through `applyChanges`); the API's
 * uploads, the agent's imports and the recovery of cut-off uploads move a status only by naming
 * what happened (`nextStatus`), never by writing a status of their own.
 *
 * locked = metadata only; uploading = bits being written (an upload, a re-upload, an import);
 * available = bits stored or a location referenced; error = the last upload failed (it may be
 * retried, or the stored bits were read back and do not match the image's sha256); deleted = on
 * the way out: kept (bits too) until its purge time, restorable until then.
 */
const transitions: Record<ImageStatus, readonly ImageStatus[]> = {
  locked: ['uploading', 'available', 'deleted'],
  uploading: ['available', 'error', 'locked', 'deleted'],
  available: ['uploading', 'error', 'deleted'],
  error: ['uploading', 'locked', 'available', 'deleted'],
  // Back out of a soft delete (restore), to what the bits allow; the purge removes the record.
  deleted: ['available', 'locked'],
};

/** Whether a stored change may move `from` to `to` (staying put is always allowed). */
export function canTransition(from: ImageStatus, to: ImageStatus): boolean {
  return from === to || transitions[from].includes(to);
}

/**
 * What happens to an image's bits:
 * - `begin`: bits start to arrive (an upload, a re-upload, an import);
 * - `store`: they are stored and verified;
 * - `fail`: the upload failed, or whoever wrote it is gone (crashed, cut off): the image falls
 *   back to the bits it had before, if any;
 * - `damage`: stored bits read back (to compute the digests left pending) do not match the
 *   image's size or sha256: the image is taken out of reach;
 * - `reference`: an HTTP location is referenced instead of stored bits;
 * - `clear`: the bits are given up, the image is metadata only again;
 * - `delete`: the image is on its way out;
 * - `restore`: a deleted image comes back before it is purged, with the bits it had, if any.
 */
export const lifecycleEvents = ['begin', 'store', 'fail', 'damage', 'reference', 'clear', 'delete', 'restore'] as const;
export type LifecycleEvent = (typeof lifecycleEvents)[number];

/** What the machine needs to know besides the status: whether the image has bits (a location) already. */
export interface LifecycleFacts {
  hasBits: boolean;
}

const after: Record<LifecycleEvent, (from: ImageStatus, facts: LifecycleFacts) => ImageStatus | undefined> = {
  begin: (from) => (from === 'locked' || from === 'available' || from === 'error' ? 'uploading' : undefined),
  store: (from) => (from === 'uploading' ? 'available' : undefined),
  fail: (from, facts) => (from === 'uploading' ? (facts.hasBits ? 'available' : 'error') : undefined),
  damage: (from) => (from === 'available' ? 'error' : undefined),
  reference: (from) => (from === 'locked' || from === 'error' || from === 'available' ? 'available' : undefined),
  clear: (from) => (from === 'uploading' || from === 'error' ? 'locked' : undefined),
  delete: (from) => (from === 'deleted' ? undefined : 'deleted'),
  restore: (from, facts) => (from === 'deleted' ? (facts.hasBits ? 'available' : 'locked') : undefined),
};

/**
 * The status after `event`, or a `conflict` when the event cannot happen in `from` (bits cannot
 * be stored in an image nobody began to upload; a deleted image stays deleted).
 */
export function nextStatus(
  from: ImageStatus,
  event: LifecycleEvent,
  facts: LifecycleFacts = { hasBits: false },
): ImageStatus {
  const to = after[event](from, facts);
  if (to === undefined || !canTransition(from, to)) {
    throw new VisorError('conflict', `an image that is ${from} cannot ${event}`, { details: { from, event } });
  }
  return to;
}
