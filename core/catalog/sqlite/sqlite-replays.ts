import Database from 'better-sqlite3';
import type { ReplayRepository } from '../port.js';

export const replaySchema = `
  CREATE TABLE IF NOT EXISTS replays (
    key TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS replays_expires ON replays (expires_at);
`;

/**
 * The replay memory in SQLite. Every signed request writes here, so it has its own connection
 * with synchronous=NORMAL: in WAL mode a commit then survives a crash of the process (what a
 * restart needs) without an fsync per request (~1.7 ms each; the image records keep FULL).
 * Expired entries are swept at most once a second.
 *
 * The signatures that arrive in one turn of the event loop are written in one transaction, after
 * it: one commit (one write to the WAL) for all the requests a busy server parsed together, rather
 * than one each. Each still gets its own answer; a duplicate within the batch is refused as any.
 */
export class SqliteReplays implements ReplayRepository {
  #db: Database.Database | undefined;
  #remember: Database.Statement<[string, number, number]> | undefined;
  #write: ((batch: readonly Pending[]) => boolean[]) | undefined;
  #pending: Pending[] = [];
  #nextPrune = 0;

  constructor(
    private readonly main: () => Database.Database,
    private readonly path: string,
  ) {}

  open(): void {
    if (this.#db) return;
    // An in-memory catalog is one connection's: the replay memory shares it.
    const db = this.path === ':memory:' ? this.main() : new Database(this.path);
    if (db !== this.main()) {
      db.pragma('busy_timeout = 5000');
      db.pragma('synchronous = NORMAL');
    }
    // Inserted, or taken over when expired; a live entry stays and changes nothing.
    this.#remember = db.prepare(
      'INSERT INTO replays (key, expires_at) VALUES (?, ?) ' +
        'ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at WHERE replays.expires_at <= ?',
    );
    const remember = this.#remember;
    const write = db.transaction((batch: readonly Pending[]) =>
      batch.map((p) => remember.run(p.key, p.expiresAt, p.now).changes === 1),
    );
    this.#write = (batch) => write.immediate(batch);
    this.#db = db;
  }

  close(): void {
    // What was handed in before the close is still written (or refused with the error).
    this.#flush();
    const db = this.#db;
    this.#db = undefined;
    this.#remember = undefined;
    this.#write = undefined;
    if (db && db !== this.main() && db.open) db.close();
  }

  async remember(key: string, expiresAt: number, now = Date.now()): Promise<boolean> {
    if (!this.#write) this.open();
    const fresh = new Promise<boolean>((resolve, reject) => {
      this.#pending.push({ key, expiresAt, now, resolve, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#flush());
    });
    if (now >= this.#nextPrune) {
      this.#nextPrune = now + 1000;
      await this.prune(now);
    }
    return fresh;
  }

  #flush(): void {
    const batch = this.#pending;
    if (batch.length === 0) return;
    this.#pending = [];
    let results: boolean[];
    try {
      if (!this.#write) this.open();
      results = this.#write!(batch);
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    for (const [i, p] of batch.entries()) p.resolve(results[i]!);
  }

  async prune(now = Date.now()): Promise<number> {
    if (!this.#db) this.open();
    return this.#db!.prepare('DELETE FROM replays WHERE expires_at <= ?').run(now).changes;
  }
}

interface Pending {
  key: string;
  expiresAt: number;
  now: number;
  resolve(fresh: boolean): void;
  reject(error: unknown): void;
}
