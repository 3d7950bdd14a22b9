import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Catalog } from '../../core/catalog/port.js';
import { digestsRecorded } from './digests.js';

/**
 * Flips the first bytes of an image's stored file (file store), once its deferred digests are
 * recorded: a copy then fails its integrity check. Returns what puts the bytes back.
 */
export async function corruptStoredImage(catalog: Catalog, id: string): Promise<() => Promise<void>> {
  const image = await digestsRecorded(catalog, id);
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
