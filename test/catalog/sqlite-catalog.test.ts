import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import type { Catalog } from '../../core/catalog/port.js';
import { catalogContract } from '../../core/testing/catalog-contract.js';

catalogContract('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'visor-sqlite-'));
  const paths = new Map<Catalog, string>();
  let n = 0;
  const openAt = async (path: string) => {
    const catalog = new SqliteCatalog({ path });
    await catalog.init();
    paths.set(catalog, path);
    return catalog;
  };
  return {
    open: () => openAt(join(dir, `catalog-${n++}.db`)),
    reopen: (catalog) => openAt(paths.get(catalog)!),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
