import pg from 'pg';
import { VisorError } from '../../errors.js';
import { systemClock, type Clock } from '../../image/image.js';
import type { Logger } from '../../logging/logger.js';
import type { Catalog } from '../port.js';
import { PostgresLeases, PostgresRuns, PostgresState } from './postgresql-agent-records.js';
import { postgresError } from './postgresql-errors.js';
import { PostgresImages } from './postgresql-images.js';
import { latestVersion, migrate, newerSchema, schemaVersion, type MigrationResult } from './postgresql-migrations.js';
import { PostgresChanges } from './postgresql-changes.js';
import { PostgresReplays } from './postgresql-replays.js';
import { Sql } from './postgresql-sql.js';
import { PostgresUsers } from './postgresql-users.js';

export interface PostgresCatalogOptions {
  /** postgresql://user[:password]@host[:port]/database[?sslmode=...&host=/unix/socket/dir] */
  url: string;
  /** Given apart from the URL, so that it needs no percent-encoding. */
  password?: string | undefined;
  /** The PostgreSQL schema that holds the catalog's tables; several catalogs can share a database. */
  schema?: string;
  /** Connections at most, per process. */
  poolSize?: number;
  connectTimeoutMs?: number;
  statementTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** `auto`: apply pending migrations when the catalog opens; `manual`: refuse to open until `catalog migrate`. */
  migrations?: 'auto' | 'manual';
  clock?: Clock;
  logger?: Logger;
}

// A URL without a host (a unix socket named by ?host=...) is no URL to WHATWG's parser: a
// stand-in host is put in for the parse and taken out again, as pg-connection-string does.
const noHost = '___visor_no_host___';
function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    return new URL(url.replace('@/', `@${noHost}/`).replace(/^(postgres(?:ql)?:\/\/)\//, `$1${noHost}/`));
  }
}

/** The URL with `password` in it: pg lets the URL's (absent) password win over a separate one. */
function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = parseUrl(url);
  u.password = encodeURIComponent(password);
  return u.toString().replace(noHost, '');
}

/** The catalog's address for messages: user, host, port and database, never the password. */
export function describeCatalog(url: string, schema: string): string {
  try {
    const u = parseUrl(url);
    const user = decodeURIComponent(u.username) || 'postgres';
    const hostname = u.hostname === noHost ? '' : u.hostname;
    const host = hostname || u.searchParams.get('host') || 'localhost';
    const port = u.port || u.searchParams.get('port') || '5432';
    const database = decodeURIComponent(u.pathname.slice(1)) || user;
    return `postgresql://${user}@${host}:${port}/${database} (schema ${schema})`;
  } catch {
    return `(schema ${schema})`;
  }
}

/**
 * The catalog in PostgreSQL: the central catalog of a deployment with several API servers and
 * agents. A bounded pool per process, statement and connect timeouts, versioned migrations
 * applied under an advisory lock, and every check-and-write a single atomic statement.
 */
export class PostgresCatalog implements Catalog {
  readonly kind = 'postgresql';
  readonly images: PostgresImages;
  readonly users: PostgresUsers;
  readonly runs: PostgresRuns;
  readonly leases: PostgresLeases;
  readonly state: PostgresState;
  readonly replays: PostgresReplays;
  readonly changes: PostgresChanges;
  readonly schema: string;
  readonly where: string;
  readonly #options: PostgresCatalogOptions;
  readonly #sql: Sql;
  #pool: pg.Pool | undefined;
  #opened = false;

  constructor(options: PostgresCatalogOptions) {
    this.#options = options;
    this.schema = options.schema ?? 'visor';
    this.where = describeCatalog(options.url, this.schema);
    this.#sql = new Sql(this.schema, this.where);
    this.images = new PostgresImages(this.#sql, options.clock ?? systemClock);
    this.users = new PostgresUsers(this.#sql);
    this.runs = new PostgresRuns(this.#sql);
    this.leases = new PostgresLeases(this.#sql);
    this.state = new PostgresState(this.#sql);
    this.replays = new PostgresReplays(this.#sql);
    this.changes = new PostgresChanges(this.#sql);
  }

  /** Connects, checks the schema version, and applies pending migrations (unless `migrations: manual`). */
  async init(): Promise<void> {
    if (this.#opened) return;
    const pool = await this.#connect();
    try {
      const version = await schemaVersion(pool, this.schema);
      if (version > latestVersion) throw newerSchema(this.where, version);
      if (version < latestVersion) {
        if (this.#options.migrations === 'manual') {
          const now = version === 0 ? 'has no catalog tables yet' : `has schema version ${version}`;
          throw new VisorError(
            'config',
            `PostgreSQL catalog ${this.where} ${now}, this visor needs ${latestVersion}: ` +
              'run `visor catalog migrate -c CONFIG` (catalog.options.migrations is manual)',
            { details: { found: version, latest: latestVersion } },
          );
        }
        const result = await migrate(pool, this.schema, this.where);
        if (result.applied.length > 0) {
          this.#options.logger?.info('catalog schema migrated', {
            catalog: this.where,
            from: result.from,
            to: result.to,
          });
        }
      }
      this.#opened = true;
    } catch (error) {
      await this.close();
      throw postgresError(error, this.where);
    }
  }

  /** `visor catalog migrate`: applies what is pending and says what it did. */
  async migrate(): Promise<MigrationResult> {
    const pool = await this.#connect();
    try {
      return await migrate(pool, this.schema, this.where);
    } catch (error) {
      throw postgresError(error, this.where);
    }
  }

  /**
   * One connection in a REPEATABLE READ, READ ONLY transaction: every statement of `read` sees
   * the catalog as it was when the first one ran, while other connections go on writing.
   */
  async snapshot<T>(read: (view: Catalog) => Promise<T>): Promise<T> {
    const pool = await this.#connect();
    const client = await pool.connect().catch((error: unknown) => {
      throw postgresError(error, this.where);
    });
    const sql = new Sql(this.schema, this.where, client);
    const clock = this.#options.clock ?? systemClock;
    const view: Catalog = {
      kind: this.kind,
      images: new PostgresImages(sql, clock),
      users: new PostgresUsers(sql),
      runs: new PostgresRuns(sql),
      leases: new PostgresLeases(sql),
      state: new PostgresState(sql),
      replays: new PostgresReplays(sql),
      init: async () => undefined,
      close: async () => undefined,
    };
    let failed = false;
    try {
      await sql.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return await read(view);
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      await sql.execute(failed ? 'ROLLBACK' : 'COMMIT').catch(() => undefined);
      client.release(failed);
    }
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    this.#opened = false;
    this.#sql.attach(undefined);
    await pool?.end().catch(() => undefined);
  }

  /**
   * One connection before the pool: does the server answer, take our credentials, and speak
   * UTF-8? A client that fails while authenticating is cut off here, so that it cannot keep the
   * process alive (pg leaves the socket open when a password is needed and none was given).
   */
  async #probe(o: PostgresCatalogOptions): Promise<void> {
    const client = new pg.Client({
      connectionString: withPassword(o.url, o.password),
      connectionTimeoutMillis: o.connectTimeoutMs ?? 10_000,
      application_name: 'visor',
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const rows = (await client.query<{ server_encoding: string }>('SHOW server_encoding')).rows;
      const encoding = rows[0]?.server_encoding ?? '';
      if (encoding !== 'UTF8') {
        throw new VisorError(
          'config',
          `PostgreSQL catalog ${this.where}: the database's encoding is ${encoding}; ` +
            'image metadata needs UTF8 (createdb --encoding=UTF8 --template=template0)',
        );
      }
      await client.end();
    } catch (error) {
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      await client.end().catch(() => undefined);
      throw error;
    }
  }

  async #connect(): Promise<pg.Pool> {
    if (this.#pool) return this.#pool;
    const o = this.#options;
    const statementTimeout = o.statementTimeoutMs ?? 30_000;
    const pool = new pg.Pool({
      connectionString: withPassword(o.url, o.password),
      max: o.poolSize ?? 10,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 10_000,
      idleTimeoutMillis: o.idleTimeoutMs ?? 30_000,
      // The server cancels a statement after this; the client gives up a little later, should
      // the server not answer at all.
      statement_timeout: statementTimeout,
      query_timeout: statementTimeout + 5_000,
      application_name: 'visor',
      keepAlive: true,
    });
    // An idle connection the server dropped (restart, failover) must not take the process down.
    pool.on('error', (error) =>
      o.logger?.warn('a pooled PostgreSQL connection failed', { catalog: this.where, error: error.message }),
    );
    try {
      await this.#probe(o);
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw postgresError(error, this.where);
    }
    this.#pool = pool;
    this.#sql.attach(pool);
    return pool;
  }
}
