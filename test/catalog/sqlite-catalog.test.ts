import { describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import type { Catalog } from '../../core/catalog/port.js';
import { catalogContract } from '../../core/testing/catalog-contract.js';
import { makeImage } from '../../core/testing/images.js';

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

describe('sqlite tag index', () => {
  it('is filled from the images of a catalog written before it existed, and answers tag filters', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-sqlite-tags-'));
    const path = join(dir, 'catalog.db');
    try {
      const old = new SqliteCatalog({ path });
      await old.init();
      await old.images.create(makeImage({ name: 'tagged', tags: ['gold', 'lts'] }));
      await old.images.create(makeImage({ name: 'plain', tags: [] }));
      // As a catalog of an earlier version: no tag table, no triggers.
      old.db.exec(`DROP TRIGGER image_tags_insert; DROP TRIGGER image_tags_update; DROP TRIGGER image_tags_delete;
        DROP TABLE image_tags;`);
      await old.images.create(makeImage({ name: 'later', tags: ['gold'] }));
      await old.close();

      const catalog = new SqliteCatalog({ path });
      await catalog.init();
      try {
        const byTag = async (tag: string) =>
          (await catalog.images.list({ filters: { tags: tag } })).items.map((i) => i.name).sort();
        expect(await byTag('gold')).toEqual(['later', 'tagged']);
        expect(await byTag('lts')).toEqual(['tagged']);
        expect(await byTag('none')).toEqual([]);
        // The filter is a lookup in the index, not a scan of the documents.
        const plan = catalog.db
          .prepare(`EXPLAIN QUERY PLAN SELECT id FROM images WHERE id IN (SELECT id FROM image_tags WHERE tag = ?)`)
          .all('gold') as { detail: string }[];
        expect(plan.map((p) => p.detail).join(' | ')).toMatch(/SEARCH image_tags USING PRIMARY KEY \(tag=\?\)/);
      } finally {
        await catalog.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('answers a tag many images carry (tested row by row) as one few carry (looked up): same order', async () => {
    const catalog = new SqliteCatalog({ path: ':memory:' });
    await catalog.init();
    try {
      // More than the lookup's limit (1000) carry "common"; every 250th carries "rare" too.
      for (let i = 0; i < 1200; i++) {
        const tags = i % 250 === 0 ? ['common', 'rare'] : ['common'];
        await catalog.images.create(makeImage({ name: `img-${String(1199 - i).padStart(4, '0')}`, tags }));
      }
      await catalog.images.create(makeImage({ name: 'untagged', tags: [] }));
      const walk = async (tag: string) => {
        const seen: string[] = [];
        let marker: string | undefined;
        do {
          const page = await catalog.images.list({
            filters: { tags: tag },
            sort: 'name',
            limit: 97,
            ...(marker ? { marker } : {}),
          });
          seen.push(...page.items.map((i) => i.name));
          marker = page.nextMarker;
        } while (marker);
        return seen;
      };
      const common = await walk('common');
      expect(common).toHaveLength(1200);
      expect(common).toEqual([...common].sort());
      expect(new Set(common).size).toBe(1200);
      await expect(catalog.images.count({ filters: { tags: 'common' } })).resolves.toBe(1200);
      expect(await walk('rare')).toEqual(['img-0199', 'img-0449', 'img-0699', 'img-0949', 'img-1199']);
      await expect(catalog.images.count({ filters: { tags: 'rare', name: 'img-0199' } })).resolves.toBe(1);
    } finally {
      await catalog.close();
    }
  });
});
