import type Database from 'better-sqlite3';
import type { Image } from '../../image/model.js';
import { CHANGE_FEED_KEEP, type ImageChange, type ImageChangeBatch, type ImageChangeFeed } from '../port.js';

/**
 * The change feed as triggers on the images table: every write, whoever makes it (this process,
 * another agent, a restore), records itself in the same transaction. SQLite has one writer at a
 * time, so the AUTOINCREMENT order is the commit order. Each write also drops what fell out of the
 * kept tail (a range delete on the key: nothing to do most of the time).
 */
export const changeSchema = `
  CREATE TABLE IF NOT EXISTS image_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    op TEXT NOT NULL,
    before TEXT,
    after TEXT
  );
  CREATE TRIGGER IF NOT EXISTS image_changes_create AFTER INSERT ON images BEGIN
    INSERT INTO image_changes (id, op, after) VALUES (new.id, 'create', new.doc);
    DELETE FROM image_changes WHERE seq <= last_insert_rowid() - ${CHANGE_FEED_KEEP};
  END;
  CREATE TRIGGER IF NOT EXISTS image_changes_update AFTER UPDATE ON images BEGIN
    INSERT INTO image_changes (id, op, before, after) VALUES (new.id, 'update', old.doc, new.doc);
    DELETE FROM image_changes WHERE seq <= last_insert_rowid() - ${CHANGE_FEED_KEEP};
  END;
  CREATE TRIGGER IF NOT EXISTS image_changes_delete AFTER DELETE ON images BEGIN
    INSERT INTO image_changes (id, op, before) VALUES (old.id, 'delete', old.doc);
    DELETE FROM image_changes WHERE seq <= last_insert_rowid() - ${CHANGE_FEED_KEEP};
  END;
`;

interface ChangeRow {
  seq: number;
  id: string;
  op: ImageChange['op'];
  before: string | null;
  after: string | null;
}

export class SqliteChanges implements ImageChangeFeed {
  constructor(private readonly db: () => Database.Database) {}

  async cursor(): Promise<number> {
    // The AUTOINCREMENT high-water mark survives even when every row was pruned.
    const row = this.db().prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'image_changes'`).get() as
      | { seq: number }
      | undefined;
    return row?.seq ?? 0;
  }

  async since(since: number, limit = 1000): Promise<ImageChangeBatch> {
    const db = this.db();
    // One read transaction: the bounds and the rows agree even while another process writes.
    return db.transaction(() => {
      const newest = (
        db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'image_changes'`).get() as { seq: number } | undefined
      )?.seq;
      const oldest = (db.prepare('SELECT min(seq) AS seq FROM image_changes').get() as { seq: number | null }).seq;
      const rows = db
        .prepare('SELECT seq, id, op, before, after FROM image_changes WHERE seq > ? ORDER BY seq LIMIT ?')
        .all(since, Math.max(1, limit)) as ChangeRow[];
      const changes = rows.map(toChange);
      const behind = since > (newest ?? 0);
      const forgotten = oldest !== null && since < oldest - 1;
      const cursor = behind ? (newest ?? 0) : (changes[changes.length - 1]?.seq ?? since);
      return { changes, cursor, gap: behind || forgotten };
    })();
  }
}

function toChange(row: ChangeRow): ImageChange {
  return {
    seq: row.seq,
    id: row.id,
    op: row.op,
    ...(row.before ? { before: JSON.parse(row.before) as Image } : {}),
    ...(row.after ? { after: JSON.parse(row.after) as Image } : {}),
  };
}
