import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { isVisorError, VisorError } from '../../errors.js';
import type { Attribute } from '../../image/attributes.js';
import { applyChanges, validateImage, type Clock, systemClock } from '../../image/image.js';
import type { Image, ImageChanges } from '../../image/model.js';
import type {
  Catalog,
  ImageQuery,
  ImageRepository,
  LeaseRepository,
  Page,
  RunRepository,
  StateRepository,
  User,
  UserRepository,
} from '../port.js';
import { agentRecordsSchema, SqliteLeases, SqliteRuns, SqliteState } from './sqlite-agent-records.js';
import { replaySchema, SqliteReplays } from './sqlite-replays.js';
import { changeSchema, SqliteChanges } from './sqlite-changes.js';
import { ensurePrivateDir, ensurePrivateFile, tightenIfPresent } from '../../fs/private-paths.js';
import { userExists, userNotFound, validateUser } from '../users.js';
import { migrateOwnersToIds } from './sqlite-owner-ids.js';
import {
  containsPattern,
  SEARCHED_PROPERTY,
  imageNotFound,
  normalizeQuery,
  readAttribute,
  staleRevision,
  unknownMarker,
  type NormalizedQuery,
} from '../query.js';

/**
 * JSON path for an attribute. Segments are quoted; they come from `resolveAttribute`, whose
 * patterns admit no quote characters, so building SQL text from them is safe — and it must be
 * text, not a parameter, for SQLite to match the expression indexes below.
 */
function jsonPath(attribute: Attribute): string {
  return `'$${attribute.segments.map((s) => `."${s}"`).join('')}'`;
}
const expr = (attribute: Attribute) => (attribute.path === 'id' ? 'id' : `json_extract(doc, ${jsonPath(attribute)})`);

// Attributes worth an index: the ones VISOR's clients, the API and the agent filter or sort on.
const indexed = ['name', 'status', 'architecture', 'owner', 'access', 'createdAt', 'checksums.sha256'];

export interface SqliteCatalogOptions {
  /** Database file; created with its directory if missing. ':memory:' for throwaway use. */
  path: string;
  clock?: Clock;
}

export class SqliteCatalog implements Catalog {
  readonly kind = 'sqlite';
  readonly images: ImageRepository;
  readonly users: UserRepository;
  readonly runs: RunRepository;
  readonly leases: LeaseRepository;
  readonly state: StateRepository;
  readonly replays: SqliteReplays;
  readonly changes: SqliteChanges;
  #db: Database.Database | undefined;
  readonly #options: SqliteCatalogOptions;

  constructor(options: SqliteCatalogOptions) {
    this.#options = options;
    const statement: Prepare = <P extends unknown[], R>(sql: string) => this.statement<P, R>(sql);
    this.images = new SqliteImages(() => this.db, statement, options.clock ?? systemClock);
    this.users = new SqliteUsers(statement);
    this.runs = new SqliteRuns(() => this.db);
    this.leases = new SqliteLeases(() => this.db);
    this.state = new SqliteState(() => this.db);
    this.replays = new SqliteReplays(() => this.db, options.path);
    this.changes = new SqliteChanges(() => this.db);
  }

  get db(): Database.Database {
    if (!this.#db) throw new VisorError('unavailable', 'the SQLite catalog is not open (call init first)');
    return this.#db;
  }

  /**
   * Prepared statements by SQL text: preparing costs as much as running a small query, and
   * listings repeat the same few shapes (bounded, in case of many filter combinations).
   */
  readonly #statements = new Map<string, Database.Statement>();
  statement<P extends unknown[] = unknown[], R = unknown>(sql: string): Database.Statement<P, R> {
    let statement = this.#statements.get(sql);
    if (!statement) {
      if (this.#statements.size >= 500) this.#statements.clear();
      statement = this.db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement as unknown as Database.Statement<P, R>;
  }

  async init(): Promise<void> {
    if (this.#db) return;
    const { path } = this.#options;
    try {
      if (path !== ':memory:') {
        // SQLite would create the file 0644 (and its -wal and -shm like it): it holds private
        // metadata and sealed secrets.
        // The catalog's folder is made private when it is made here; an existing one may be any
        // folder (/var/lib): it is left as it is, the files themselves are 0600.
        ensurePrivateDir(dirname(path), { tightenExisting: false });
        ensurePrivateFile(path);
        for (const extra of ['-wal', '-shm', '-journal']) tightenIfPresent(`${path}${extra}`);
      }
      const db = new Database(path);
      // WAL lets readers (CLI, API) run beside the agent's writes; synchronous=FULL makes every
      // committed write survive a power cut, not only a process crash.
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.exec(`CREATE TABLE IF NOT EXISTS images (
        id TEXT PRIMARY KEY NOT NULL,
        revision INTEGER NOT NULL,
        doc TEXT NOT NULL CHECK (json_valid(doc))
      ) WITHOUT ROWID`);
      db.exec(`CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY NOT NULL,
        access_key TEXT NOT NULL UNIQUE,
        doc TEXT NOT NULL CHECK (json_valid(doc))
      ) WITHOUT ROWID`);
      db.exec(agentRecordsSchema);
      db.exec(replaySchema);
      db.exec(changeSchema);
      db.exec(`CREATE UNIQUE INDEX IF NOT EXISTS users_id ON users (json_extract(doc, '$."id"'))`);
      migrateOwnersToIds(db);
      db.exec(searchSchema);
      openTagIndex(db);
      for (const path of indexed) {
        const attribute = { path, segments: path.split('.'), valueType: 'string' as const, array: false };
        db.exec(`CREATE INDEX IF NOT EXISTS images_${path.replace('.', '_')} ON images (${expr(attribute)})`);
      }
      this.#db = db;
      this.replays.open();
    } catch (error) {
      throw new VisorError('unavailable', `cannot open the SQLite catalog at ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /**
   * A second connection holding one read transaction: in WAL mode it sees the database as it was
   * at its first read, however much other connections (and processes) write meanwhile.
   */
  async snapshot<T>(read: (view: Catalog) => Promise<T>): Promise<T> {
    if (this.#options.path === ':memory:') throw new VisorError('invalidInput', 'an in-memory catalog has no snapshot');
    const view = new SqliteCatalog(this.#options);
    await view.init();
    try {
      view.db.exec('BEGIN');
      view.db.prepare('SELECT count(*) FROM images').get();
      return await read(view);
    } finally {
      if (view.db.inTransaction) view.db.exec('COMMIT');
      await view.close();
    }
  }

  async close(): Promise<void> {
    this.replays.close();
    const db = this.#db;
    this.#db = undefined;
    this.#statements.clear();
    if (db?.open) db.close();
  }
}

interface Row {
  id: string;
  revision: number;
  doc: string;
}

type Prepare = <P extends unknown[] = unknown[], R = unknown>(sql: string) => Database.Statement<P, R>;

class SqliteImages implements ImageRepository {
  constructor(
    private readonly db: () => Database.Database,
    private readonly stmt: Prepare,
    private readonly clock: Clock,
  ) {}

  async create(image: Image): Promise<Image> {
    const valid = validateImage(image);
    try {
      this.stmt('INSERT INTO images (id, revision, doc) VALUES (?, ?, ?)').run(
        valid.id,
        valid.revision,
        JSON.stringify(valid),
      );
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new VisorError('conflict', `an image with id ${valid.id} already exists`, { details: { id: valid.id } });
      }
      throw sqliteError(error);
    }
    return valid;
  }

  async get(id: string): Promise<Image> {
    const image = await this.find(id);
    if (!image) throw imageNotFound(id);
    return image;
  }

  async find(id: string): Promise<Image | undefined> {
    const row = this.stmt<[string], Row>('SELECT doc FROM images WHERE id = ?').get(id);
    return row ? (JSON.parse(row.doc) as Image) : undefined;
  }

  /** Whether at most TAG_LOOKUP_MAX images carry `tag` (counted in the index, stopping there). */
  readonly #fewWithTag = (tag: string): boolean => {
    const sql = `SELECT count(*) AS n FROM (SELECT 1 FROM image_tags WHERE tag = ? LIMIT ${TAG_LOOKUP_MAX + 1})`;
    return (this.stmt<[string], { n: number }>(sql).get(tag)?.n ?? 0) <= TAG_LOOKUP_MAX;
  };

  async list(query: ImageQuery = {}): Promise<Page<Image>> {
    const q = normalizeQuery(query);
    const where = whereClause(q, this.#fewWithTag);
    if (q.marker !== undefined) {
      // A marker the caller may not see is no marker at all: otherwise paging after it would tell
      // whether a private image exists and, sorted by any attribute, what its values are.
      const visible = visibility(q.visibleTo);
      const markerSql = `SELECT id, doc FROM images WHERE id = ?${visible ? ` AND ${visible.sql}` : ''}`;
      const markerRow = this.stmt<unknown[], Row>(markerSql).get(q.marker, ...(visible?.params ?? []));
      if (!markerRow) throw unknownMarker(q.marker);
      const value = q.sort.path === 'id' ? markerRow.id : readAttribute(JSON.parse(markerRow.doc), q.sort);
      where.push(...afterMarker(q, value ?? null, markerRow.id));
    }
    const dir = q.dir === 'desc' ? 'DESC' : 'ASC';
    const order = q.sort.path === 'id' ? `id ${dir}` : `${expr(q.sort)} ${dir}, id ${dir}`;
    const sql =
      `SELECT id, doc FROM ` +
      `images${where.length ? ` WHERE ${where.map((w) => w.sql).join(' AND ')}` : ''} ORDER ` +
      `BY ${order}${q.limit !== undefined ? ' LIMIT ?' : ''}`;
    const params = where.flatMap((w) => w.params);
    if (q.limit !== undefined) params.push(q.limit + 1);
    const rows = this.stmt<unknown[], Row>(sql).all(...params);
    const more = q.limit !== undefined && rows.length > q.limit;
    const items = (more ? rows.slice(0, q.limit) : rows).map((r) => JSON.parse(r.doc) as Image);
    const last = items[items.length - 1];
    return more && last ? { items, nextMarker: last.id } : { items };
  }

  async count(query: Pick<ImageQuery, 'filters' | 'visibleTo' | 'hideDeleted' | 'search'> = {}): Promise<number> {
    const where = whereClause(normalizeQuery(query), this.#fewWithTag);
    const filter = where.length ? ` WHERE ${where.map((w) => w.sql).join(' AND ')}` : '';
    const sql = `SELECT count(*) AS n FROM images${filter}`;
    return this.stmt<unknown[], { n: number }>(sql).get(...where.flatMap((w) => w.params))?.n ?? 0;
  }

  async update(id: string, expectedRevision: number, changes: ImageChanges): Promise<Image> {
    const db = this.db();
    // IMMEDIATE takes the write lock before reading, so another process cannot slip a write in
    // between our revision check and our update.
    const tx = db.transaction(() => {
      const row = this.stmt<[string], Row>('SELECT revision, doc FROM images WHERE id = ?').get(id);
      if (!row) throw imageNotFound(id);
      if (row.revision !== expectedRevision) throw staleRevision(id, expectedRevision, row.revision);
      const next = applyChanges(JSON.parse(row.doc) as Image, changes, this.clock);
      this.stmt('UPDATE images SET revision = ?, doc = ? WHERE id = ? AND revision = ?').run(
        next.revision,
        JSON.stringify(next),
        id,
        expectedRevision,
      );
      return next;
    });
    return runTx(() => tx.immediate());
  }

  async delete(id: string, expectedRevision?: number): Promise<void> {
    const db = this.db();
    const tx = db.transaction(() => {
      const row = this.stmt<[string], Row>('SELECT revision FROM images WHERE id = ?').get(id);
      if (!row) throw imageNotFound(id);
      if (expectedRevision !== undefined && row.revision !== expectedRevision)
        throw staleRevision(id, expectedRevision, row.revision);
      this.stmt('DELETE FROM images WHERE id = ?').run(id);
    });
    runTx(() => tx.immediate());
  }
}

class SqliteUsers implements UserRepository {
  constructor(private readonly stmt: Prepare) {}

  async create(user: User): Promise<User> {
    const valid = validateUser(user);
    try {
      this.stmt('INSERT INTO users (name, access_key, doc) VALUES (?, ?, ?)').run(
        valid.name,
        valid.accessKey,
        JSON.stringify(valid),
      );
    } catch (error) {
      if (String((error as { code?: string }).code).startsWith('SQLITE_CONSTRAINT')) throw userExists(valid);
      throw sqliteError(error);
    }
    return valid;
  }

  async findByName(name: string): Promise<User | undefined> {
    const row = this.stmt<[string], { doc: string }>('SELECT doc FROM users WHERE name = ?').get(name);
    return row ? (JSON.parse(row.doc) as User) : undefined;
  }

  async findById(id: string): Promise<User | undefined> {
    const sql = `SELECT doc FROM users WHERE json_extract(doc, '$."id"') = ?`;
    const row = this.stmt<[string], { doc: string }>(sql).get(id);
    return row ? (JSON.parse(row.doc) as User) : undefined;
  }

  async findByAccessKey(accessKey: string): Promise<User | undefined> {
    const row = this.stmt<[string], { doc: string }>('SELECT doc FROM users WHERE access_key = ?').get(accessKey);
    return row ? (JSON.parse(row.doc) as User) : undefined;
  }

  async list(): Promise<User[]> {
    return this.stmt<[], { doc: string }>('SELECT doc FROM users ORDER BY name')
      .all()
      .map((r) => JSON.parse(r.doc) as User);
  }

  async delete(name: string): Promise<void> {
    const result = this.stmt('DELETE FROM users WHERE name = ?').run(name);
    if (result.changes === 0) throw userNotFound(name);
  }
}

interface Condition {
  sql: string;
  params: unknown[];
}

/**
 * A tag filter has two good plans, and SQLite's planner (even with ANALYZE statistics) picks the
 * first for both: the images that carry a rare tag are best looked up in the tag index and sorted
 * (0.1 ms for 10 of 100,000 images, where walking the sort order took 170 ms); a common tag is
 * best tested row by row while walking the sort order, stopping at the page's end (0.2 ms for a
 * page of 20 when all 100,000 carry it, where gathering and sorting them all took 23 ms). So the
 * index is counted first, up to this many: a few microseconds.
 */
const TAG_LOOKUP_MAX = 1000;

function whereClause(q: NormalizedQuery, fewWithTag: (tag: string) => boolean): Condition[] {
  const out: Condition[] = q.filters.map(({ attribute, value }) =>
    attribute.path === 'tags'
      ? fewWithTag(String(value))
        ? { sql: `id IN (SELECT id FROM image_tags WHERE tag = ?)`, params: [value] }
        : { sql: `EXISTS (SELECT 1 FROM image_tags WHERE tag = ? AND image_tags.id = images.id)`, params: [value] }
      : attribute.array
        ? { sql: `EXISTS (SELECT 1 FROM json_each(doc, ${jsonPath(attribute)}) WHERE value = ?)`, params: [value] }
        : { sql: `${expr(attribute)} = ?`, params: [value] },
  );
  const visible = visibility(q.visibleTo);
  if (visible) out.push(visible);
  if (q.hideDeleted) out.push({ sql: `json_extract(doc, '$."status"') <> 'deleted'`, params: [] });
  if (q.search !== undefined) out.push(searchCondition(q.search));
  return out;
}

/**
 * What a search reads, kept beside each image by triggers: the name, the tags and the description
 * on lines of their own. Scanning these short texts costs a fraction of parsing every document
 * (a search with 100,000 images is a scan). Images written before the table existed are filled
 * in when the catalog opens.
 */
const searchText = (doc: string) =>
  `json_extract(${doc}, '$."name"') || char(10) || ` +
  `coalesce((SELECT group_concat(value, char(10)) FROM json_each(${doc}, '$."tags"')), '') || char(10) || ` +
  `coalesce(json_extract(${doc}, '$."properties"."${SEARCHED_PROPERTY}"'), '')`;
const searchSchema = `
  CREATE TABLE IF NOT EXISTS image_search (id TEXT PRIMARY KEY NOT NULL, text TEXT NOT NULL) WITHOUT ROWID;
  CREATE TRIGGER IF NOT EXISTS image_search_insert AFTER INSERT ON images BEGIN
    INSERT OR REPLACE INTO image_search (id, text) VALUES (new.id, ${searchText('new.doc')});
  END;
  CREATE TRIGGER IF NOT EXISTS image_search_update AFTER UPDATE ON images BEGIN
    DELETE FROM image_search WHERE id = old.id;
    INSERT OR REPLACE INTO image_search (id, text) VALUES (new.id, ${searchText('new.doc')});
  END;
  CREATE TRIGGER IF NOT EXISTS image_search_delete AFTER DELETE ON images BEGIN
    DELETE FROM image_search WHERE id = old.id;
  END;
  INSERT INTO image_search (id, text)
    SELECT id, ${searchText('doc')} FROM images WHERE id NOT IN (SELECT id FROM image_search);`;

/**
 * Each image's tags, kept beside it by triggers: a tag filter (the agents' selectors, the
 * dashboard, `visor brief --tag`) is then an index lookup of the images that carry the tag, where
 * it was a scan parsing every document (2.1 ms with 822 images, 0.09 ms with this index; a scan
 * grows with the catalog, the lookup with the matches). Images written before the table existed
 * are indexed when it is created.
 */
const tagSchema = `
  CREATE TABLE image_tags (tag TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (tag, id)) WITHOUT ROWID;
  CREATE INDEX image_tags_id ON image_tags (id);
  CREATE TRIGGER image_tags_insert AFTER INSERT ON images BEGIN
    INSERT OR IGNORE INTO image_tags (tag, id) SELECT value, new.id FROM json_each(new.doc, '$."tags"');
  END;
  CREATE TRIGGER image_tags_update AFTER UPDATE OF doc ON images BEGIN
    DELETE FROM image_tags WHERE id = old.id;
    INSERT OR IGNORE INTO image_tags (tag, id) SELECT value, new.id FROM json_each(new.doc, '$."tags"');
  END;
  CREATE TRIGGER image_tags_delete AFTER DELETE ON images BEGIN
    DELETE FROM image_tags WHERE id = old.id;
  END;
  INSERT OR IGNORE INTO image_tags (tag, id)
    SELECT j.value, images.id FROM images, json_each(images.doc, '$."tags"') j;`;

/** Creates the tag index (and fills it from the images) once, in one transaction. */
function openTagIndex(db: Database.Database): void {
  const exists = () => db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'image_tags'`).get();
  if (exists()) return;
  // Checked again under the write lock: another process may be opening the catalog too.
  db.transaction(() => {
    if (!exists()) db.exec(tagSchema);
  }).immediate();
}

/** LIKE folds ASCII letters (case_sensitive_like is never set); escaped, the caller's text has no wildcard. */
function searchCondition(search: string): Condition {
  return {
    sql: `id IN (SELECT id FROM image_search WHERE text LIKE ? ESCAPE '\\')`,
    params: [containsPattern(search)],
  };
}

/**
 * Images `user` may see: public ones, its own, and shared ones that name it. The unary `+` keeps
 * SQLite from answering the OR with the access and owner indexes (every visible row gathered, then
 * sorted: 120 ms a page with 100,000 public images); it walks the sort's index instead and stops at
 * the page's end. The worst case (a user who sees almost nothing) is one scan, as it was.
 */
function visibility(user: string | undefined): Condition | undefined {
  if (user === undefined) return undefined;
  return {
    sql:
      `(+json_extract(doc, '$."access"') = 'public' OR +json_extract(doc, '$."owner"') = ? OR ` +
      `(+json_extract(doc, '$."access"') = 'shared' AND ` +
      `EXISTS (SELECT 1 FROM json_each(doc, '$."members"') WHERE value = ?)))`,
    params: [user, user],
  };
}

/**
 * Keyset condition: rows strictly after (value, id) in the sort order. NULLs sort first
 * ascending and last descending, as in MongoDB.
 */
function afterMarker(q: NormalizedQuery, value: unknown, id: string): Condition[] {
  if (q.sort.path === 'id') return [{ sql: q.dir === 'asc' ? 'id > ?' : 'id < ?', params: [id] }];
  const e = expr(q.sort);
  if (q.dir === 'asc') {
    return value === null
      ? [{ sql: `((${e} IS NULL AND id > ?) OR ${e} IS NOT NULL)`, params: [id] }]
      : [{ sql: `(${e} > ? OR (${e} = ? AND id > ?))`, params: [value, value, id] }];
  }
  return value === null
    ? [{ sql: `(${e} IS NULL AND id < ?)`, params: [id] }]
    : [{ sql: `(${e} < ? OR ${e} IS NULL OR (${e} = ? AND id < ?))`, params: [value, value, id] }];
}

function runTx<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw isVisorError(error) ? error : sqliteError(error);
  }
}

function sqliteError(error: unknown): VisorError {
  const code = (error as { code?: string }).code ?? '';
  const kind = code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' ? 'unavailable' : 'internal';
  return new VisorError(kind, `SQLite catalog: ${(error as Error).message}`, { cause: error });
}
