import { MongoClient, MongoServerError, type Collection, type Db, type Filter, type Sort } from 'mongodb';
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
import {
  MongoLeases,
  MongoRuns,
  MongoState,
  type LeaseDoc,
  type RunDoc,
  type StateDoc,
} from './mongodb-agent-records.js';
import { MongoReplays, type ReplayDoc } from './mongodb-replays.js';
import { MongoChanges, type ChangeDoc, type CounterDoc } from './mongodb-changes.js';
import { migrateOwnersToIds } from './mongodb-owner-ids.js';
import { userExists, userNotFound, validateUser } from '../users.js';
import {
  literalRegex,
  SEARCHED_PROPERTY,
  imageNotFound,
  normalizeQuery,
  readAttribute,
  staleRevision,
  unknownMarker,
  type NormalizedQuery,
} from '../query.js';

/** Stored form: the image with its id as `_id`. */
type ImageDoc = Omit<Image, 'id'> & { _id: string };

export interface MongoCatalogOptions {
  uri: string;
  database?: string;
  /** Collection names are prefixed, so that several catalogs (or test runs) can share a database. */
  collectionPrefix?: string;
  clock?: Clock;
  serverSelectionTimeoutMS?: number;
}

// Majority + journal: an acknowledged write survives a primary failover and a crash.
const writeConcern = { w: 'majority' as const, j: true };

export class MongoCatalog implements Catalog {
  readonly kind = 'mongodb';
  readonly images: ImageRepository;
  readonly users: UserRepository;
  readonly runs: RunRepository;
  readonly leases: LeaseRepository;
  readonly state: StateRepository;
  readonly replays: MongoReplays;
  readonly changes: MongoChanges;
  readonly #options: MongoCatalogOptions;
  #client: MongoClient | undefined;
  #db: Db | undefined;

  constructor(options: MongoCatalogOptions) {
    this.#options = options;
    this.changes = new MongoChanges(
      () => this.collection<ChangeDoc>('image_changes'),
      () => this.collection<CounterDoc>('counters'),
      guard,
    );
    this.images = new MongoImages(
      () => this.collection<ImageDoc>('images'),
      options.clock ?? systemClock,
      this.changes,
    );
    this.users = new MongoUsers(() => this.collection<UserDoc>('users'));
    this.runs = new MongoRuns(() => this.collection<RunDoc>('runs'), guard);
    this.leases = new MongoLeases(() => this.collection<LeaseDoc>('leases'), guard);
    this.state = new MongoState(() => this.collection<StateDoc>('state'), guard);
    this.replays = new MongoReplays(() => this.collection<ReplayDoc>('replays'), guard);
  }

  collection<T extends object>(name: string): Collection<T> {
    if (!this.#db) throw new VisorError('unavailable', 'the MongoDB catalog is not open (call init first)');
    return this.#db.collection<T>(`${this.#options.collectionPrefix ?? ''}${name}`);
  }

  async init(): Promise<void> {
    if (this.#db) return;
    const client = new MongoClient(this.#options.uri, {
      serverSelectionTimeoutMS: this.#options.serverSelectionTimeoutMS ?? 10_000,
      writeConcern,
      readConcern: { level: 'majority' },
    });
    try {
      await client.connect();
      this.#client = client;
      this.#db = client.db(this.#options.database);
      const images = this.collection<ImageDoc>('images');
      await images.createIndexes([
        { key: { name: 1 } },
        { key: { status: 1 } },
        { key: { architecture: 1 } },
        { key: { owner: 1 } },
        { key: { access: 1 } },
        { key: { createdAt: 1 } },
        { key: { 'checksums.sha256': 1 } },
        { key: { tags: 1 } },
      ]);
      await this.collection<UserDoc>('users').createIndex({ accessKey: 1 }, { unique: true });
      await migrateOwnersToIds(this.collection('users'), this.collection('images'), this.collection('state'));
      const withId = { partialFilterExpression: { id: { $type: 'string' } } };
      await this.collection<UserDoc>('users').createIndex({ id: 1 }, { unique: true, ...withId });
      await this.collection<RunDoc>('runs').createIndex({ target: 1, startedAt: -1 });
      await this.collection<ReplayDoc>('replays').createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 });
    } catch (error) {
      await client.close().catch(() => undefined);
      this.#client = undefined;
      this.#db = undefined;
      throw mongoError(error, 'cannot open the MongoDB catalog');
    }
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#db = undefined;
    await client?.close();
  }
}

const field = (attribute: Attribute) => (attribute.path === 'id' ? '_id' : attribute.segments.join('.'));

function toDoc(image: Image): ImageDoc {
  const { id, ...rest } = image;
  return { _id: id, ...rest };
}

function fromDoc(doc: ImageDoc): Image {
  const { _id, ...rest } = doc;
  // Key order as in a freshly built image, so both catalogs return identical JSON.
  return validateImage({ id: _id, ...rest });
}

class MongoImages implements ImageRepository {
  constructor(
    private readonly images: () => Collection<ImageDoc>,
    private readonly clock: Clock,
    private readonly changes: MongoChanges,
  ) {}

  async create(image: Image): Promise<Image> {
    const valid = validateImage(image);
    try {
      await this.images().insertOne(toDoc(valid));
    } catch (error) {
      if (error instanceof MongoServerError && error.code === 11000) {
        throw new VisorError('conflict', `an image with id ${valid.id} already exists`, { details: { id: valid.id } });
      }
      throw mongoError(error);
    }
    await this.changes.record({ id: valid.id, op: 'create', after: valid });
    return valid;
  }

  async get(id: string): Promise<Image> {
    const image = await this.find(id);
    if (!image) throw imageNotFound(id);
    return image;
  }

  async find(id: string): Promise<Image | undefined> {
    const doc = await guard(() => this.images().findOne({ _id: id }));
    return doc ? fromDoc(doc) : undefined;
  }

  async list(query: ImageQuery = {}): Promise<Page<Image>> {
    const q = normalizeQuery(query);
    const clauses = filterClauses(q);
    const markerId = q.marker;
    if (markerId !== undefined) {
      // A marker the caller may not see is no marker at all (no existence or value oracle).
      const visible = visibility(q.visibleTo);
      const filter: Filter<ImageDoc> = visible ? { $and: [{ _id: markerId }, visible] } : { _id: markerId };
      const marker = await guard(() => this.images().findOne(filter));
      if (!marker) throw unknownMarker(markerId);
      const value = q.sort.path === 'id' ? marker._id : readAttribute(fromDoc(marker), q.sort);
      clauses.push(afterMarker(q, value ?? null, marker._id));
    }
    const order = q.dir === 'desc' ? -1 : 1;
    const sort: Sort = q.sort.path === 'id' ? { _id: order } : { [field(q.sort)]: order, _id: order };
    const cursor = this.images().find(clauses.length ? { $and: clauses } : {}, { sort });
    if (q.limit !== undefined) cursor.limit(q.limit + 1);
    const docs = await guard(() => cursor.toArray());
    const more = q.limit !== undefined && docs.length > q.limit;
    const items = (more ? docs.slice(0, q.limit) : docs).map(fromDoc);
    const last = items[items.length - 1];
    return more && last ? { items, nextMarker: last.id } : { items };
  }

  async count(query: Pick<ImageQuery, 'filters' | 'visibleTo' | 'hideDeleted' | 'search'> = {}): Promise<number> {
    const clauses = filterClauses(normalizeQuery(query));
    return guard(() => this.images().countDocuments(clauses.length ? { $and: clauses } : {}));
  }

  async update(id: string, expectedRevision: number, changes: ImageChanges): Promise<Image> {
    const doc = await guard(() => this.images().findOne({ _id: id }));
    if (!doc) throw imageNotFound(id);
    if (doc.revision !== expectedRevision) throw staleRevision(id, expectedRevision, doc.revision);
    const next = applyChanges(fromDoc(doc), changes, this.clock);
    // The revision in the filter makes check-and-write one atomic step on the server.
    const result = await guard(() => this.images().replaceOne({ _id: id, revision: expectedRevision }, toDoc(next)));
    if (result.matchedCount === 0) {
      const now = await this.find(id);
      if (!now) throw imageNotFound(id);
      throw staleRevision(id, expectedRevision, now.revision);
    }
    await this.changes.record({ id, op: 'update', before: fromDoc(doc), after: next });
    return next;
  }

  async delete(id: string, expectedRevision?: number): Promise<void> {
    const filter: Filter<ImageDoc> =
      expectedRevision === undefined ? { _id: id } : { _id: id, revision: expectedRevision };
    const deleted = await guard(() => this.images().findOneAndDelete(filter));
    if (deleted) {
      await this.changes.record({ id, op: 'delete', before: fromDoc(deleted) });
      return;
    }
    const now = await this.find(id);
    if (!now) throw imageNotFound(id);
    throw staleRevision(id, expectedRevision ?? now.revision, now.revision);
  }
}

type UserDoc = Omit<User, 'name'> & { _id: string };

class MongoUsers implements UserRepository {
  constructor(private readonly users: () => Collection<UserDoc>) {}

  async create(user: User): Promise<User> {
    const { name, ...rest } = validateUser(user);
    try {
      await this.users().insertOne({ _id: name, ...rest });
    } catch (error) {
      if (error instanceof MongoServerError && error.code === 11000) throw userExists(user);
      throw mongoError(error);
    }
    return user;
  }

  async findByName(name: string): Promise<User | undefined> {
    return toUser(await guard(() => this.users().findOne({ _id: name })));
  }

  async findById(id: string): Promise<User | undefined> {
    return toUser(await guard(() => this.users().findOne({ id })));
  }

  async findByAccessKey(accessKey: string): Promise<User | undefined> {
    return toUser(await guard(() => this.users().findOne({ accessKey })));
  }

  async list(): Promise<User[]> {
    const docs = await guard(() =>
      this.users()
        .find({}, { sort: { _id: 1 } })
        .toArray(),
    );
    return docs.map((d) => toUser(d)!);
  }

  async delete(name: string): Promise<void> {
    const result = await guard(() => this.users().deleteOne({ _id: name }));
    if (result.deletedCount === 0) throw userNotFound(name);
  }
}

function toUser(doc: UserDoc | null): User | undefined {
  if (!doc) return undefined;
  const { _id, ...rest } = doc;
  return validateUser({ name: _id, ...rest });
}

function filterClauses(q: NormalizedQuery): Filter<ImageDoc>[] {
  // An array field given a scalar matches when it contains it: MongoDB's own equality semantics.
  const out: Filter<ImageDoc>[] = q.filters.map(
    ({ attribute, value }) => ({ [field(attribute)]: value }) as Filter<ImageDoc>,
  );
  const visible = visibility(q.visibleTo);
  if (visible) out.push(visible);
  if (q.hideDeleted) out.push({ status: { $ne: 'deleted' } } as Filter<ImageDoc>);
  if (q.search !== undefined) out.push(searchClause(q.search));
  return out;
}

/** The text as an escaped regular expression (no character of it is an operator); a list field matches by element. */
function searchClause(search: string): Filter<ImageDoc> {
  const pattern = { $regex: literalRegex(search), $options: 'i' };
  return {
    $or: [{ name: pattern }, { tags: pattern }, { [`properties.${SEARCHED_PROPERTY}`]: pattern }],
  } as Filter<ImageDoc>;
}

/** Images `user` may see: public ones, its own, and shared ones that name it. */
function visibility(user: string | undefined): Filter<ImageDoc> | undefined {
  if (user === undefined) return undefined;
  return { $or: [{ access: 'public' }, { owner: user }, { access: 'shared', members: user }] };
}

/** Documents strictly after (value, id) in the sort order; null and missing sort first ascending. */
function afterMarker(q: NormalizedQuery, value: unknown, id: string): Filter<ImageDoc> {
  if (q.sort.path === 'id') return { _id: q.dir === 'asc' ? { $gt: id } : { $lt: id } };
  const f = field(q.sort);
  if (q.dir === 'asc') {
    return value === null
      ? { $or: [{ [f]: null, _id: { $gt: id } }, { [f]: { $ne: null } }] }
      : { $or: [{ [f]: { $gt: value } }, { [f]: value, _id: { $gt: id } }] };
  }
  return value === null
    ? { [f]: null, _id: { $lt: id } }
    : { $or: [{ [f]: { $lt: value } }, { [f]: null }, { [f]: value, _id: { $lt: id } }] };
}

async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw mongoError(error);
  }
}

function mongoError(error: unknown, context = 'MongoDB catalog'): VisorError {
  if (isVisorError(error)) return error;
  const name = (error as Error).name ?? '';
  const kind = /Network|ServerSelection|Timeout|NotPrimary|PoolCleared/.test(name) ? 'unavailable' : 'internal';
  return new VisorError(kind, `${context}: ${(error as Error).message}`, { cause: error });
}
