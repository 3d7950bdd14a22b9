import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { validateImage } from '../../core/image/image.js';

/** Runs the writer until it has acknowledged `writes` writes, then kills it with SIGKILL. */
async function writeThenKill(
  path: string,
  writes: number,
): Promise<{ created: string[]; updated: Map<string, number> }> {
  const child = spawn(process.execPath, [new URL('./fixtures/crash-writer.mjs', import.meta.url).pathname, path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const created: string[] = [];
  const updated = new Map<string, number>();
  let seen = 0;
  const exited = new Promise((resolve) => child.on('exit', resolve));
  for await (const line of createInterface({ input: child.stdout })) {
    const [what, id, revision] = line.split(' ');
    if (what === 'created') created.push(id!);
    if (what === 'updated') updated.set(id!, Number(revision));
    if (++seen === writes) child.kill('SIGKILL');
  }
  await exited;
  return { created, updated };
}

describe('sqlite catalog durability', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-crash-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([37, 151, 402])(
    'keeps every acknowledged write and no half-written record after kill -9 at write %i',
    async (writes) => {
      const path = join(dir, `crash-${writes}.db`);
      const acknowledged = await writeThenKill(path, writes);
      expect(acknowledged.created.length).toBeGreaterThanOrEqual(Math.floor(writes / 2));

      const raw = new Database(path);
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      const rows = raw.prepare('SELECT id, revision, doc FROM images').all() as {
        id: string;
        revision: number;
        doc: string;
      }[];
      raw.close();
      for (const row of rows) {
        const image = validateImage(JSON.parse(row.doc));
        expect(image.id).toBe(row.id);
        expect(image.revision).toBe(row.revision);
      }

      const catalog = new SqliteCatalog({ path });
      await catalog.init();
      try {
        for (const id of acknowledged.created) await expect(catalog.images.get(id)).resolves.toMatchObject({ id });
        for (const [id, revision] of acknowledged.updated)
          await expect(catalog.images.get(id)).resolves.toMatchObject({ revision });
        // At most the one write in flight at the kill may exist beyond the acknowledged ones.
        expect(rows.length - acknowledged.created.length).toBeLessThanOrEqual(1);
      } finally {
        await catalog.close();
      }
    },
  );
});
