import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageService } from '../../../agent/service/image-service.js';
import { SqliteCatalog } from '../../../core/catalog/sqlite/sqlite-catalog.js';
import { silentLogger } from '../../../core/logging/logger.js';
import { FileStore } from '../../../core/store/file/file-store.js';

/** A real catalog (SQLite) and file store in a temporary folder, with the image service over them. */
export async function importHarness() {
  const dir = await mkdtemp(join(tmpdir(), 'visor-import-'));
  const catalog = new SqliteCatalog({ path: join(dir, 'catalog.db') });
  await catalog.init();
  const store = new FileStore({ root: join(dir, 'images') });
  const images = new ImageService({ catalog, stores: new Map([['local', store]]), defaultStore: 'local', logger: silentLogger });
  /** Every file under the store's folder: for "nothing left behind". */
  const storedFiles = async (): Promise<string[]> => {
    const files = await readdir(join(dir, 'images'), { recursive: true, withFileTypes: true }).catch(() => []);
    return files.filter((f) => f.isFile()).map((f) => f.name);
  };
  const all = async () => (await catalog.images.list({ limit: 1000 })).items;
  return {
    dir,
    catalog,
    store,
    images,
    storedFiles,
    all,
    deps: { catalog, images, logger: silentLogger },
    close: async () => {
      await catalog.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
