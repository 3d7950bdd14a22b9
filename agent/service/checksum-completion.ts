import type { ImageRepository } from '../../core/catalog/port.js';
import { isVisorError, VisorError } from '../../core/errors.js';
import { nextStatus } from '../../core/image/lifecycle.js';
import type { Checksums, Image } from '../../core/image/model.js';
import { digestStored } from '../../core/store/digest-stored.js';
import type { Store } from '../../core/store/port.js';

/** What became of an image whose pending digests were computed. */
export type Completion =
  /** The digests were recorded. */
  | { outcome: 'completed'; image: Image }
  /** Nothing to record: the image is gone, has other bytes now, or nothing is pending any more. */
  | { outcome: 'moot'; image: Image | undefined }
  /** The stored bytes are not those the image's sha256 and size vouch for: the image is now `error`. */
  | { outcome: 'damaged'; image: Image | undefined; error: VisorError };

/**
 * Computes the digests an upload left pending from the stored bytes, checks the size and sha256
 * the image already has against the same read, and records the rest. The bytes read are those
 * of the location the image had when the work began; nothing is recorded if it has another
 * one by the end (a re-upload) or none (deleted). Stored bytes that do not match the image's
 * sha256 take the image out of reach (`error`): the catalog never shows an available image
 * whose digests are not those of its bytes. Concurrent metadata changes are fine: the
 * digests are applied to whatever revision is current.
 */
export async function completeChecksums(
  images: ImageRepository,
  stores: ReadonlyMap<string, Store>,
  image: Image,
  signal?: AbortSignal,
): Promise<Completion> {
  const location = image.location;
  if (!location || !image.checksumsPending?.length) return { outcome: 'moot', image };
  const store = stores.get(location.store);
  if (!store)
    throw new VisorError('unavailable', `image ${image.id} is in store "${location.store}", not configured here`);
  const read = await digestStored(store, location.uri, signal);
  for (let attempt = 0; ; attempt++) {
    const current = await images.find(image.id);
    const same = current?.location?.store === location.store && current.location.uri === location.uri;
    // Only an available image's: a deleted one is on its way out, one being uploaded gets other bytes.
    const settled = current?.status === 'available' && same && current.checksumsPending?.length;
    if (!current || !settled) return { outcome: 'moot', image: current };
    const problems = mismatches(current, read);
    try {
      if (problems.length > 0) {
        const error = new VisorError(
          'integrity',
          `image ${image.id}: its stored bytes do not match the catalog (${problems.join('; ')})`,
          { details: { id: image.id } },
        );
        const failed = await images.update(image.id, current.revision, {
          status: nextStatus(current.status, 'damage'),
          checksumsPending: null,
        });
        return { outcome: 'damaged', image: failed, error };
      }
      const checksums = { ...current.checksums, ...read.checksums };
      const done = await images.update(image.id, current.revision, { checksums, checksumsPending: null });
      return { outcome: 'completed', image: done };
    } catch (error) {
      if (!isVisorError(error, 'conflict') || attempt >= 5) throw error;
    }
  }
}

/** How the bytes read differ from what the image says of them (its size and digests known). */
function mismatches(image: Image, read: { size: number; checksums: Required<Checksums> }): string[] {
  const problems: string[] = [];
  if (image.size !== undefined && image.size !== read.size)
    problems.push(`${read.size} bytes, the image says ${image.size}`);
  for (const [algorithm, value] of Object.entries(image.checksums)) {
    const got = read.checksums[algorithm as keyof Checksums];
    if (value !== got) problems.push(`${algorithm} is ${got}, the image says ${value}`);
  }
  if (image.checksums.sha256 === undefined) problems.push('the image has no sha256 to check the bytes against');
  return problems;
}
