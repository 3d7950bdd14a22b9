import { describe, expect, it } from 'vitest';
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

describe('sqlite replay memory: one transaction per turn of the event loop', () => {
  it('answers each of many signatures recorded at once, refuses their duplicates, and keeps them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-sqlite-replays-'));
    const path = join(dir, 'catalog.db');
    const catalog = new SqliteCatalog({ path });
    await catalog.init();
    try {
      const now = Date.now();
      const sig = (n: number) => n.toString(16).padStart(64, '0');
      // 200 signatures, each sent twice, all in the same turn: one batch.
      const keys = Array.from({ length: 400 }, (_, i) => sig(i % 200));
      const fresh = await Promise.all(keys.map((k) => catalog.replays.remember(k, now + 300_000, now)));
      expect(fresh.slice(0, 200).every(Boolean)).toBe(true);
      expect(fresh.slice(200).some(Boolean)).toBe(false);
      // Written, not only answered: closing right after a batch is handed in still writes it.
      const late = catalog.replays.remember(sig(999), now + 300_000, now);
      await catalog.close();
      await expect(late).resolves.toBe(true);
      const again = new SqliteCatalog({ path });
      await again.init();
      try {
        await expect(again.replays.remember(sig(7), now + 300_000, now + 1)).resolves.toBe(false);
        await expect(again.replays.remember(sig(999), now + 300_000, now + 1)).resolves.toBe(false);
      } finally {
        await again.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
