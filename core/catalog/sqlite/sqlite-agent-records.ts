import type Database from 'better-sqlite3';
import { VisorError } from '../../errors.js';
import type { Lease, LeaseRepository, RunRecord, RunRepository, StateRepository } from '../port.js';

export const agentRecordsSchema = `
  CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY NOT NULL,
    target TEXT NOT NULL,
    started_at TEXT NOT NULL,
    doc TEXT NOT NULL CHECK (json_valid(doc))
  );
  CREATE INDEX IF NOT EXISTS runs_target_started ON runs (target, started_at);
  CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
  CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL CHECK (json_valid(value))
  ) WITHOUT ROWID;
`;

export class SqliteRuns implements RunRepository {
  constructor(private readonly db: () => Database.Database) {}

  async create(run: RunRecord): Promise<void> {
    try {
      this.db()
        .prepare('INSERT INTO runs (id, target, started_at, doc) VALUES (?, ?, ?, ?)')
        .run(run.id, run.target, run.startedAt, JSON.stringify(run));
    } catch (error) {
      if (String((error as { code?: string }).code).startsWith('SQLITE_CONSTRAINT'))
        throw new VisorError('conflict', `run ${run.id} exists already`);
      throw error;
    }
  }

  async update(run: RunRecord): Promise<void> {
    const result = this.db().prepare('UPDATE runs SET doc = ? WHERE id = ?').run(JSON.stringify(run), run.id);
    if (result.changes === 0) throw new VisorError('notFound', `no run ${run.id}`);
  }

  async get(id: string): Promise<RunRecord | undefined> {
    const row = this.db().prepare<[string], { doc: string }>('SELECT doc FROM runs WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as RunRecord) : undefined;
  }

  async list(query: { target?: string; limit?: number } = {}): Promise<RunRecord[]> {
    const limit = query.limit ?? 100;
    const rows =
      query.target === undefined
        ? this.db()
            .prepare<[number], { doc: string }>('SELECT doc FROM runs ORDER BY started_at DESC, id DESC LIMIT ?')
            .all(limit)
        : this.db()
            .prepare<[string, number], { doc: string }>(
              'SELECT doc FROM runs WHERE target = ? ORDER BY started_at DESC, id DESC LIMIT ?',
            )
            .all(query.target, limit);
    return rows.map((r) => JSON.parse(r.doc) as RunRecord);
  }

  async prune(target: string, keep: number): Promise<number> {
    return this.db()
      .prepare(
        'DELETE FROM runs WHERE target = ? AND id NOT IN (SELECT id FROM ' +
          'runs WHERE target = ? ORDER BY started_at DESC, id DESC LIMIT ?)',
      )
      .run(target, target, keep).changes;
  }
}

export class SqliteLeases implements LeaseRepository {
  constructor(private readonly db: () => Database.Database) {}

  async acquire(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<Lease | undefined> {
    const db = this.db();
    // IMMEDIATE: the check and the take are one step, also across processes.
    return db
      .transaction(() => {
        const row = db
          .prepare<[string], { holder: string; expires_at: number }>(
            'SELECT holder, expires_at FROM leases WHERE name = ?',
          )
          .get(name);
        if (row && row.holder !== holder && row.expires_at > now) return undefined;
        const lease = { name, holder, expiresAt: now + ttlMs };
        db.prepare(
          'INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT(name) ' +
            'DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at',
        ).run(name, holder, lease.expiresAt);
        return lease;
      })
      .immediate();
  }

  async release(name: string, holder: string): Promise<void> {
    this.db().prepare('DELETE FROM leases WHERE name = ? AND holder = ?').run(name, holder);
  }

  async get(name: string): Promise<Lease | undefined> {
    const row = this.db()
      .prepare<[string], { holder: string; expires_at: number }>('SELECT holder, expires_at FROM leases WHERE name = ?')
      .get(name);
    return row ? { name, holder: row.holder, expiresAt: row.expires_at } : undefined;
  }
}

export class SqliteState implements StateRepository {
  constructor(private readonly db: () => Database.Database) {}

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const row = this.db().prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?').get(key);
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    this.db()
      .prepare('INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value')
      .run(key, JSON.stringify(value));
  }

  async delete(key: string): Promise<void> {
    this.db().prepare('DELETE FROM state WHERE key = ?').run(key);
  }

  async list<T = unknown>(prefix: string): Promise<[string, T][]> {
    // Range scan instead of LIKE: no escaping of % and _ in keys, and it uses the primary key.
    const rows = this.db()
      .prepare<[string, string], { key: string; value: string }>(
        'SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key',
      )
      .all(prefix, `${prefix}\uffff`);
    return rows.map((r) => [r.key, JSON.parse(r.value) as T]);
  }
}
