import type { ImageStatus } from './model.js';

/**
 * Allowed status changes. locked = metadata only; uploading = bits being written; available =
 * bits stored or a location referenced; error = the last upload failed (it may be retried).
 * An available image may be re-uploaded (a content change), or found in error when its stored
 * bytes are read back and do not match its sha256; deleted is final.
 */
const transitions: Record<ImageStatus, readonly ImageStatus[]> = {
  locked: ['uploading', 'available', 'deleted'],
  uploading: ['available', 'error', 'locked', 'deleted'],
  available: ['uploading', 'error', 'deleted'],
  error: ['uploading', 'locked', 'available', 'deleted'],
  deleted: [],
};

export function canTransition(from: ImageStatus, to: ImageStatus): boolean {
  return from === to || transitions[from].includes(to);
}
