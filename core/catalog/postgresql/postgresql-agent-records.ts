import { VisorError } from '../../errors.js';
import type { Lease, LeaseRepository, RunRecord, RunRepository, StateRepository } from '../port.js';
import type { Sql } from './postgresql-sql.js';

export class PostgresRuns implements RunRepository {
  constructor(private readonly sql: Sql) {}

  async create(run: RunRecord): Promise<void> {
    const statement = `INSERT INTO ${this.sql.t('runs')} (id, target, started_at, body) VALUES ($1, $2, $3, $4)`;
    try {
      await this.sql.query(statement, [run.id, run.target, run.startedAt, JSON.stringify(run)]);
    } catch (error) {
      if (this.sql.isUnique(error)) throw new VisorError('conflict', `run ${run.id} exists already`);
      throw error;
    }
  }

  async update(run: RunRecord): Promise<void> {
    const changed = await this.sql.execute(`UPDATE ${this.sql.t('runs')} SET body = $2 WHERE id = $1`, [
      run.id,
      JSON.stringify(run),
    ]);
    if (changed === 0) throw new VisorError('notFound', `no run ${run.id}`);
  }

  async get(id: string): Promise<RunRecord | undefined> {
    const rows = await this.sql.query<{ body: string }>(`SELECT body FROM ${this.sql.t('runs')} WHERE id = $1`, [id]);
    return rows[0] ? (JSON.parse(rows[0].body) as RunRecord) : undefined;
  }

  async list(query: { target?: string; limit?: number } = {}): Promise<RunRecord[]> {
    const limit = query.limit ?? 100;
    const rows =
      query.target === undefined
        ? await this.sql.query<{ body: string }>(
            `SELECT body FROM ${this.sql.t('runs')} ORDER BY started_at DESC, id DESC LIMIT $1`,
            [limit],
          )
        : await this.sql.query<{ body: string }>(
            `SELECT body FROM ${this.sql.t('runs')} WHERE target = $1 ORDER BY started_at DESC, id DESC LIMIT $2`,
            [query.target, limit],
          );
    return rows.map((r) => JSON.parse(r.body) as RunRecord);
  }

  async prune(target: string, keep: number): Promise<number> {
    const runs = this.sql.t('runs');
    return this.sql.execute(
      `DELETE FROM ${runs} WHERE target = $1 AND id NOT IN ` +
        `(SELECT id FROM ${runs} WHERE target = $1 ORDER BY started_at DESC, id DESC LIMIT $2)`,
      [target, keep],
    );
  }
}

export class PostgresLeases implements LeaseRepository {
  constructor(private readonly sql: Sql) {}

  async acquire(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<Lease | undefined> {
    const expiresAt = now + ttlMs;
    // One statement, so one atomic step on the server: insert, or take over our own or an
    // expired lease; a live lease of someone else changes nothing and returns no row.
    const rows = await this.sql.query(
      `INSERT INTO ${this.sql.t('leases')} AS l (name, holder, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE l.holder = excluded.holder OR l.expires_at <= $4
       RETURNING holder`,
      [name, holder, expiresAt, now],
    );
    return rows.length === 1 ? { name, holder, expiresAt } : undefined;
  }

  async release(name: string, holder: string): Promise<void> {
    await this.sql.execute(`DELETE FROM ${this.sql.t('leases')} WHERE name = $1 AND holder = $2`, [name, holder]);
  }

  async get(name: string): Promise<Lease | undefined> {
    const rows = await this.sql.query<{ holder: string; expires_at: string }>(
      `SELECT holder, expires_at FROM ${this.sql.t('leases')} WHERE name = $1`,
      [name],
    );
    return rows[0] ? { name, holder: rows[0].holder, expiresAt: Number(rows[0].expires_at) } : undefined;
  }
}

export class PostgresState implements StateRepository {
  constructor(private readonly sql: Sql) {}

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const rows = await this.sql.query<{ value: string }>(`SELECT value FROM ${this.sql.t('state')} WHERE key = $1`, [
      key,
    ]);
    return rows[0] ? (JSON.parse(rows[0].value) as T) : undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    await this.sql.execute(
      `INSERT INTO ${this.sql.t('state')} (key, value) VALUES ($1, $2) ` +
        'ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      [key, JSON.stringify(value)],
    );
  }

  async delete(key: string): Promise<void> {
    await this.sql.execute(`DELETE FROM ${this.sql.t('state')} WHERE key = $1`, [key]);
  }

  async list<T = unknown>(prefix: string): Promise<[string, T][]> {
    // A range on the primary key instead of LIKE: no escaping of % and _ in keys.
    const rows = await this.sql.query<{ key: string; value: string }>(
      `SELECT key, value FROM ${this.sql.t('state')} WHERE key >= $1 AND key < $2 ORDER BY key`,
      [prefix, `${prefix}\uffff`],
    );
    return rows.map((r) => [r.key, JSON.parse(r.value) as T]);
  }
}
