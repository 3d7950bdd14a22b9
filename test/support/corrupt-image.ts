import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Catalog } from '../../core/catalog/port.js';

/**
 * Flips the first bytes of an image's stored file (file store), once its deferred digests are
 * recorded: a copy then fails its integrity check. Returns what puts the bytes back.
 */
export async function corruptStoredImage(catalog: Catalog, id: string): Promise<() => Promise<void>> {
  let image = await catalog.images.get(id);
  for (let i = 0; i < 400 && image.checksumsPending?.length; i++) {
    await new Promise((r) => setTimeout(r, 25));
    image = await catalog.images.get(id);
  }
  if (image.checksumsPending?.length) throw new Error(`the digests of ${id} are still pending`);
  const path = fileURLToPath(image.location!.uri);
  const file = await open(path, 'r+');
  const original = Buffer.alloc(16);
  try {
    await file.read(original, 0, 16, 0);
    await file.write(Buffer.from(original.map((b) => b ^ 0xff)), 0, 16, 0);
  } finally {
    await file.close();
  }
  return async () => {
    const again = await open(path, 'r+');
    try {
      await again.write(original, 0, 16, 0);
    } finally {
      await again.close();
    }
  };
}
