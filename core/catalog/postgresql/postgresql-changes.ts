import type { Image } from '../../image/model.js';
import type { ImageChange, ImageChangeBatch, ImageChangeFeed } from '../port.js';
import type { Sql } from './postgresql-sql.js';

interface ChangeRow {
  seq: string;
  id: string;
  op: ImageChange['op'];
  before: string | null;
  after: string | null;
}

/** The change feed in PostgreSQL: rows a trigger on the images table writes (schema migration 4). */
export class PostgresChanges implements ImageChangeFeed {
  constructor(private readonly sql: Sql) {}

  async cursor(): Promise<number> {
    const rows = await this.sql.query<{ seq: string }>(`SELECT seq FROM ${this.sql.t('image_change_seq')}`);
    return Number(rows[0]?.seq ?? 0);
  }

  async since(since: number, limit = 1000): Promise<ImageChangeBatch> {
    // The bounds and the rows in one statement: one snapshot.
    const rows = await this.sql.query<ChangeRow & { newest: string; oldest: string | null }>(
      `SELECT c.seq, c.id, c.op, c.before, c.after, b.newest, b.oldest
       FROM (SELECT (SELECT seq FROM ${this.sql.t('image_change_seq')}) AS newest,
                    (SELECT min(seq) FROM ${this.sql.t('image_changes')}) AS oldest) b
       LEFT JOIN LATERAL (SELECT * FROM ${this.sql.t('image_changes')} WHERE seq > $1 ORDER BY seq LIMIT $2) c ON true`,
      [since, Math.max(1, limit)],
    );
    const newest = Number(rows[0]?.newest ?? 0);
    const oldest = rows[0]?.oldest === null || rows[0]?.oldest === undefined ? undefined : Number(rows[0].oldest);
    const changes = rows.filter((r) => r.seq !== null).map(toChange);
    const behind = since > newest;
    const forgotten = oldest !== undefined && since < oldest - 1;
    const cursor = behind ? newest : (changes[changes.length - 1]?.seq ?? since);
    return { changes, cursor, gap: behind || forgotten };
  }
}

function toChange(row: ChangeRow): ImageChange {
  return {
    seq: Number(row.seq),
    id: row.id,
    op: row.op,
    ...(row.before ? { before: JSON.parse(row.before) as Image } : {}),
    ...(row.after ? { after: JSON.parse(row.after) as Image } : {}),
  };
}
