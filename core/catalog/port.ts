import type { FilterValue } from '../image/attributes.js';
import type { Image, ImageChanges } from '../image/model.js';

export type SortDirection = 'asc' | 'desc';

/**
 * VISOR's query semantics: equality filters on any attribute (arrays match when they contain
 * the value; custom properties as `properties.<key>`), one sort attribute with the id as the
 * tie-breaker, and keyset paging by marker (the id of the last image of the previous page).
 */
export interface ImageQuery {
  filters?: Readonly<Record<string, FilterValue>>;
  /** Only images this user (by id) may see: public ones, its own, and shared ones that name it. */
  visibleTo?: string;
  /** Leaves out deleted images (kept, restorable, until purged): what users list by default. */
  hideDeleted?: boolean;
  /**
   * Text to find (case-insensitively, at least for ASCII letters) anywhere in the name, in a tag, or in the
   * `description` custom property. Plain text: no character is a wildcard.
   */
  search?: string;
  sort?: string;
  dir?: SortDirection;
  limit?: number;
  marker?: string;
}

export interface Page<T> {
  items: T[];
  /** Marker for the next page; absent on the last page. */
  nextMarker?: string;
}

export interface ImageRepository {
  /** Stores a complete, new image (see `newImage`); an existing id is a conflict. */
  create(image: Image): Promise<Image>;
  /** Throws a notFound error when there is no such image. */
  get(id: string): Promise<Image>;
  find(id: string): Promise<Image | undefined>;
  list(query?: ImageQuery): Promise<Page<Image>>;
  count(query?: Pick<ImageQuery, 'filters' | 'visibleTo' | 'hideDeleted' | 'search'>): Promise<number>;
  /**
   * Applies `changes` if the stored revision still equals `expectedRevision`; otherwise a
   * conflict error, and nothing is written.
   */
  update(id: string, expectedRevision: number, changes: ImageChanges): Promise<Image>;
  /** Deletes the image; with `expectedRevision`, only if nobody changed it since. */
  delete(id: string, expectedRevision?: number): Promise<void>;
}

/**
 * An API user. The secret is stored sealed (see core/auth/secret-box.ts), never in clear.
 * Images name their owner and members by the user's `id`, never by the name.
 */
export interface User {
  id: string;
  name: string;
  accessKey: string;
  sealedSecret: string;
  admin: boolean;
  createdAt: string;
}

export interface UserRepository {
  /** A second user with the same name or access key is a conflict. */
  create(user: User): Promise<User>;
  findByName(name: string): Promise<User | undefined>;
  findById(id: string): Promise<User | undefined>;
  findByAccessKey(accessKey: string): Promise<User | undefined>;
  list(): Promise<User[]>;
  /** Throws notFound when there is no such user. */
  delete(name: string): Promise<void>;
}

export const runStatuses = ['running', 'succeeded', 'partial', 'failed'] as const;
export type RunStatus = (typeof runStatuses)[number];
export const actionResults = [
  'unchanged',
  'created',
  'updated',
  'replaced',
  'retired',
  'imported',
  'adopted',
  'cleaned',
  'skipped',
  'failed',
] as const;
export type ActionResult = (typeof actionResults)[number];

/** What one planned action did. */
export interface ActionRecord {
  action: string;
  result: ActionResult;
  imageId?: string;
  nativeId?: string;
  name?: string;
  detail?: string;
  error?: { kind: string; message: string };
  attempts?: number;
  bytes?: number;
  ms?: number;
  /** The action's own log lines (info and up, bounded): retries, failures, what it noticed. */
  log?: { at: string; level: string; message: string; fields?: Record<string, string | number | boolean> }[];
}

/** One sync run of one target: the agent's history. */
export interface RunRecord {
  id: string;
  target: string;
  agent: string;
  /**
   * Why the run started: its cron schedule, a catalog change it cares about, an operator (API/CLI), or an admin's
   * retry of what failed (`retry`: limited to those images).
   */
  trigger: 'schedule' | 'change' | 'manual' | 'cli' | 'retry';
  dryRun: boolean;
  status: RunStatus;
  startedAt: string;
  finishedAt?: string;
  /** Why the whole run failed (cloud unreachable, lease held elsewhere, ...). */
  error?: string;
  actions: ActionRecord[];
  /** Actions still needed when the run ended (a fresh plan after the run). */
  drift?: number;
}

export interface RunRepository {
  create(run: RunRecord): Promise<void>;
  /** Replaces the record (a run is written when it starts and when it ends). */
  update(run: RunRecord): Promise<void>;
  get(id: string): Promise<RunRecord | undefined>;
  /** Newest first. */
  list(query?: { target?: string; limit?: number }): Promise<RunRecord[]>;
  /** Keeps the newest `keep` runs of a target. */
  prune(target: string, keep: number): Promise<number>;
}

export interface Lease {
  name: string;
  holder: string;
  expiresAt: number;
}

/** Leases keep several agents (sharing one catalog) from working on the same target at once. */
export interface LeaseRepository {
  /** Takes or renews the lease; undefined when someone else holds it and it has not expired. */
  acquire(name: string, holder: string, ttlMs: number, now?: number): Promise<Lease | undefined>;
  /** Gives it up, if `holder` still holds it. */
  release(name: string, holder: string): Promise<void>;
  get(name: string): Promise<Lease | undefined>;
}

/** Small JSON records the agent keeps between runs (retirement times, converted artifacts). */
export interface StateRepository {
  get<T = unknown>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  /** Entries whose key starts with `prefix`, sorted by key. */
  list<T = unknown>(prefix: string): Promise<[string, T][]>;
}

/**
 * Signatures of requests already accepted, so that a captured request cannot be replayed: kept
 * in the catalog, so that the memory survives restarts and is shared by every API server on
 * the same catalog. An entry matters only while its request could still pass the clock-skew
 * check; after that it may be forgotten.
 */
export interface ReplayRepository {
  /**
   * Records `key` until `expiresAt` (ms since the epoch). True when it was not recorded (or its
   * entry had expired by `now`); false when it is a replay. Atomic: of concurrent calls with the
   * same key, across processes, exactly one gets true.
   */
  remember(key: string, expiresAt: number, now?: number): Promise<boolean>;
  /** Forgets entries expired by `now`; returns how many. */
  prune(now?: number): Promise<number>;
}

/** One write to an image record, as the catalog's change feed keeps it. */
export interface ImageChange {
  /** Position in the feed: increases with every write, in the order the writes were committed. */
  seq: number;
  id: string;
  op: 'create' | 'update' | 'delete';
  /** The record before the write (update, delete). */
  before?: Image;
  /** The record after the write (create, update). */
  after?: Image;
}

export interface ImageChangeBatch {
  changes: ImageChange[];
  /** The position to read on from: the last change's seq (or the one asked for when there is none). */
  cursor: number;
  /**
   * Changes after the position asked for were already forgotten (the feed keeps a bounded tail), or
   * the feed is behind the position (the catalog was replaced): the reader must assume anything changed.
   */
  gap: boolean;
}

/**
 * Every image write in commit order, so that agents in other processes on the same catalog learn
 * what changed without reading the whole catalog. Kept natively by each catalog (a trigger, a
 * counter) in the write itself; only a bounded tail of recent changes is kept.
 */
export interface ImageChangeFeed {
  /** The newest change's seq (0 when there is none): one cheap read, what pollers ask every second. */
  cursor(): Promise<number>;
  /** Changes after `since`, oldest first, at most `limit` (default 1000). */
  since(since: number, limit?: number): Promise<ImageChangeBatch>;
}

/** Changes a catalog's feed keeps: a reader further behind than this gets a gap. */
export const CHANGE_FEED_KEEP = 10_000;

/** The catalog port: where image metadata, users and the agent's records live. */
export interface Catalog {
  readonly kind: string;
  readonly images: ImageRepository;
  readonly users: UserRepository;
  readonly runs: RunRepository;
  readonly leases: LeaseRepository;
  readonly state: StateRepository;
  readonly replays: ReplayRepository;
  /** Image writes in commit order (what wakes agents on a catalog change); absent in catalogs without one. */
  readonly changes?: ImageChangeFeed;
  /** Creates tables/collections and indexes; idempotent. */
  init(): Promise<void>;
  /**
   * Runs `read` on a read-only view of the catalog as it is at one moment, while writers go on
   * (what `visor catalog backup` reads). Catalogs that cannot offer one leave it out.
   */
  snapshot?<T>(read: (view: Catalog) => Promise<T>): Promise<T>;
  /** Releases connections; safe to call twice. */
  close(): Promise<void>;
}

export const DEFAULT_SORT = 'id';
export const MAX_LIMIT = 10_000;
/** Filters in one query: far more than any real listing needs, far below what a catalog's query planner chokes on. */
export const MAX_FILTERS = 64;
/** Characters in a search text: enough for any name, short enough to keep a scan cheap. */
export const MAX_SEARCH = 200;
