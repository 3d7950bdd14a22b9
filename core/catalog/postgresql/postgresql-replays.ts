import type { ReplayRepository } from '../port.js';
import type { Sql } from './postgresql-sql.js';

/**
 * The replay memory in PostgreSQL, shared by every API server on the catalog. The insert is
 * the check: inserted, or taken over when the entry has expired; a live entry stays and the
 * statement returns no row. Expired entries are swept at most once a second per process.
 */
export class PostgresReplays implements ReplayRepository {
  #nextPrune = 0;

  constructor(private readonly sql: Sql) {}

  async remember(key: string, expiresAt: number, now = Date.now()): Promise<boolean> {
    const rows = await this.sql.query(
      `INSERT INTO ${this.sql.t('replays')} AS r (key, expires_at) VALUES ($1, $2)
       ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE r.expires_at <= $3
       RETURNING 1 AS taken`,
      [key, expiresAt, now],
    );
    if (now >= this.#nextPrune) {
      this.#nextPrune = now + 1000;
      await this.prune(now);
    }
    return rows.length === 1;
  }

  prune(now = Date.now()): Promise<number> {
    return this.sql.execute(`DELETE FROM ${this.sql.t('replays')} WHERE expires_at <= $1`, [now]);
  }
}
