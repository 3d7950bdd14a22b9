import { createHash } from 'node:crypto';
import type { Catalog } from '../../core/catalog/port.js';
import type { Image } from '../../core/image/model.js';

/**
 * The image once its deferred digests (md5, sha512: computed after an upload answers) are
 * recorded. Recording them is a catalog write: a test that compares revisions, damages stored
 * bytes or expects a sync to find nothing left to do waits for it first.
 */
export async function digestsRecorded(catalog: Catalog, id: string, timeoutMs = 15_000): Promise<Image> {
  const deadline = Date.now() + timeoutMs;
  let image = await catalog.images.get(id);
  while (image.checksumsPending?.length && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    image = await catalog.images.get(id);
  }
  if (image.checksumsPending?.length) throw new Error(`the digests of ${id} are still pending`);
  return image;
}

/** Size and the three digests of `data`, as a store or digest stream reports them. */
export const expectedDigests = (data: Buffer) => ({
  size: data.length,
  checksums: {
    md5: createHash('md5').update(data).digest('hex'),
    sha256: createHash('sha256').update(data).digest('hex'),
    sha512: createHash('sha512').update(data).digest('hex'),
  },
});
