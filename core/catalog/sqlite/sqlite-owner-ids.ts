import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { OWNER_IDS_MIGRATION } from '../users.js';

/**
 * Catalogs written before users had ids named image owners and members by user name, so a user
 * removed and re-created under the same name took over the old one's images. Once per catalog:
 * every user gets an id, and every owner or member that names an existing user is replaced by
 * that user's id (names of users already gone stay as they are: they match no caller). The
 * revision is not bumped: the image did not change, only how its owner is spelled.
 */
export function migrateOwnersToIds(db: Database.Database): void {
  db.transaction(() => {
    if (db.prepare('SELECT 1 FROM state WHERE key = ?').get(OWNER_IDS_MIGRATION)) return;
    const ids = new Map<string, string>();
    for (const row of db.prepare<[], { name: string; doc: string }>('SELECT name, doc FROM users').all()) {
      const user = JSON.parse(row.doc) as { id?: string };
      if (!user.id) {
        user.id = randomUUID();
        db.prepare('UPDATE users SET doc = ? WHERE name = ?').run(JSON.stringify({ id: user.id, ...user }), row.name);
      }
      ids.set(row.name, user.id);
    }
    if (ids.size > 0) {
      const update = db.prepare('UPDATE images SET doc = ? WHERE id = ?');
      const page = db.prepare<[string], { id: string; doc: string }>(
        'SELECT id, doc FROM images WHERE id > ? ORDER BY id LIMIT 1000',
      );
      // In pages: a statement that is still reading cannot share its connection with the updates.
      for (let rows = page.all(''); rows.length > 0; rows = page.all(rows[rows.length - 1]!.id)) {
        for (const row of rows) {
          const image = JSON.parse(row.doc) as { owner?: string; members?: string[] };
          const owner = image.owner !== undefined ? ids.get(image.owner) : undefined;
          const members = image.members?.map((m) => ids.get(m) ?? m);
          const membersChanged = members?.some((m, i) => m !== image.members![i]);
          if (owner === undefined && !membersChanged) continue;
          update.run(
            JSON.stringify({
              ...image,
              ...(owner !== undefined ? { owner } : {}),
              ...(membersChanged ? { members } : {}),
            }),
            row.id,
          );
        }
      }
    }
    db.prepare('INSERT INTO state (key, value) VALUES (?, ?)').run(
      OWNER_IDS_MIGRATION,
      JSON.stringify({ at: new Date().toISOString(), users: ids.size }),
    );
  }).immediate();
}
