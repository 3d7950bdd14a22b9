import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryConfig, QueryResult } from 'pg';
import { VisorError } from '../../errors.js';
import { CHANGE_FEED_KEEP } from '../port.js';

/**
 * The catalog's schema, as versioned, forward-only migrations. Each runs in the transaction
 * that records it, under an advisory lock per schema, so that several servers and agents
 * starting at once apply each migration exactly once and never see half of one. A migration
 * only adds (tables, columns, indexes): servers still on the previous version keep working
 * while the others are upgraded.
 */
export interface Migration {
  version: number;
  name: string;
  /** SQL for the schema named `s` (already quoted). */
  up: (s: string) => string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'images, users and state',
    // `body` is the record exactly as written (key order, every character); `doc` is the same
    // as jsonb for queries. Text is compared by its UTF-8 bytes (COLLATE "C"), as in SQLite and
    // MongoDB, whatever the database's locale.
    up: (s) => `
      CREATE TABLE ${s}.images (
        id text COLLATE "C" PRIMARY KEY,
        revision integer NOT NULL,
        body text NOT NULL,
        doc jsonb NOT NULL
      );
      CREATE INDEX images_doc ON ${s}.images USING gin (doc jsonb_path_ops);
      CREATE INDEX images_name ON ${s}.images (((doc->>'name') COLLATE "C"), id);
      CREATE INDEX images_created ON ${s}.images (((doc->>'createdAt') COLLATE "C"), id);
      CREATE INDEX images_owner ON ${s}.images ((doc->>'owner'));
      CREATE INDEX images_access ON ${s}.images ((doc->>'access'));
      CREATE TABLE ${s}.users (
        name text COLLATE "C" PRIMARY KEY,
        id text NOT NULL UNIQUE,
        access_key text NOT NULL UNIQUE,
        body text NOT NULL
      );
      CREATE TABLE ${s}.state (
        key text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
      );`,
  },
  {
    version: 2,
    name: "the agent's run history and leases",
    up: (s) => `
      CREATE TABLE ${s}.runs (
        id text COLLATE "C" PRIMARY KEY,
        target text NOT NULL,
        started_at text COLLATE "C" NOT NULL,
        body text NOT NULL
      );
      CREATE INDEX runs_target_started ON ${s}.runs (target, started_at DESC, id DESC);
      CREATE INDEX runs_started ON ${s}.runs (started_at DESC, id DESC);
      CREATE TABLE ${s}.leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        expires_at bigint NOT NULL
      );`,
  },
  {
    version: 3,
    name: 'replay memory of signed requests',
    up: (s) => `
      CREATE TABLE ${s}.replays (
        key text PRIMARY KEY,
        expires_at bigint NOT NULL
      );
      CREATE INDEX replays_expires ON ${s}.replays (expires_at);`,
  },
  {
    version: 4,
    name: 'the change feed of image writes',
    // The counter row is updated by every image write: its row lock, held to the commit, makes the
    // writers take numbers in commit order, without gaps, so a reader that saw N has seen all below.
    up: (s) => `
      CREATE TABLE ${s}.image_change_seq (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        seq bigint NOT NULL
      );
      INSERT INTO ${s}.image_change_seq (one, seq) VALUES (true, 0);
      CREATE TABLE ${s}.image_changes (
        seq bigint PRIMARY KEY,
        id text COLLATE "C" NOT NULL,
        op text NOT NULL,
        before text,
        after text
      );
      CREATE FUNCTION ${s}.record_image_change() RETURNS trigger LANGUAGE plpgsql AS $visor_changes$
      DECLARE
        next bigint;
      BEGIN
        UPDATE ${s}.image_change_seq SET seq = seq + 1 RETURNING seq INTO next;
        IF TG_OP = 'INSERT' THEN
          INSERT INTO ${s}.image_changes (seq, id, op, after) VALUES (next, NEW.id, 'create', NEW.body);
        ELSIF TG_OP = 'UPDATE' THEN
          INSERT INTO ${s}.image_changes (seq, id, op, before, after)
            VALUES (next, NEW.id, 'update', OLD.body, NEW.body);
        ELSE
          INSERT INTO ${s}.image_changes (seq, id, op, before) VALUES (next, OLD.id, 'delete', OLD.body);
        END IF;
        DELETE FROM ${s}.image_changes WHERE seq <= next - ${CHANGE_FEED_KEEP};
        RETURN NULL;
      END
      $visor_changes$;
      CREATE TRIGGER image_changes AFTER INSERT OR UPDATE OR DELETE ON ${s}.images
        FOR EACH ROW EXECUTE FUNCTION ${s}.record_image_change();`,
  },
];

export const latestVersion = migrations[migrations.length - 1]!.version;

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The advisory lock of one schema's migrations: two int4 keys from its name. */
function lockKeys(schema: string): [number, number] {
  const digest = createHash('sha256').update(`visor.catalog.migrate:${schema}`).digest();
  return [digest.readInt32BE(0), digest.readInt32BE(4)];
}

/** The schema's version: 0 when it has no catalog yet. */
export async function schemaVersion(db: Pick<Pool, 'query'> | PoolClient, schema: string): Promise<number> {
  const table = await db.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [
    `${quoteIdent(schema)}.schema_migrations`,
  ]);
  if (!table.rows[0]?.t) return 0;
  const result = await db.query<{ v: number | null }>(
    `SELECT max(version) AS v FROM ${quoteIdent(schema)}.schema_migrations`,
  );
  return result.rows[0]?.v ?? 0;
}

export interface MigrationResult {
  from: number;
  to: number;
  applied: { version: number; name: string }[];
}

export function newerSchema(where: string, found: number): VisorError {
  return new VisorError(
    'config',
    `PostgreSQL catalog ${where} has schema version ${found}, newer than this visor knows (${latestVersion}): ` +
      'upgrade visor on this machine (migrations only go forward)',
    { details: { found, latest: latestVersion } },
  );
}

/**
 * Brings the schema to `target` (the latest by default) under the schema's advisory lock, in
 * one transaction: either every pending migration is applied and recorded, or none is.
 */
export async function migrate(
  pool: Pool,
  schema: string,
  where: string,
  target = latestVersion,
): Promise<MigrationResult> {
  const s = quoteIdent(schema);
  const client = await pool.connect();
  // A migration may rightly take long (an index over a big catalog), and so may waiting for
  // another server's: neither the statement timeout nor the client's read timeout applies.
  // (pg reads `query_timeout` from a query's config; its types do not list it.)
  const q = (text: string, values?: unknown[]): Promise<QueryResult> =>
    client.query({ text, values, query_timeout: 7 * 86_400_000 } as QueryConfig);
  try {
    await q('BEGIN');
    try {
      await q('SET LOCAL statement_timeout = 0');
      await q('SELECT pg_advisory_xact_lock($1, $2)', lockKeys(schema));
      // Created only when missing: a user with rights on its schema alone needs none on the database.
      const exists = await q('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (exists.rowCount === 0) await q(`CREATE SCHEMA ${s}`);
      await q(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const from = await schemaVersion(client, schema);
      if (from > latestVersion) throw newerSchema(where, from);
      const pending = migrations.filter((m) => m.version > from && m.version <= target);
      for (const migration of pending) {
        await q(migration.up(s));
        const record = `INSERT INTO ${s}.schema_migrations (version, name) VALUES ($1, $2)`;
        await q(record, [migration.version, migration.name]);
      }
      await q('COMMIT');
      const to = pending.length > 0 ? pending[pending.length - 1]!.version : from;
      return { from, to, applied: pending.map(({ version, name }) => ({ version, name })) };
    } catch (error) {
      await q('ROLLBACK').catch(() => undefined);
      throw error;
    }
  } finally {
    client.release();
  }
}
