import { MongoServerError, type Collection } from 'mongodb';
import { VisorError } from '../../errors.js';
import type { Lease, LeaseRepository, RunRecord, RunRepository, StateRepository } from '../port.js';

export type RunDoc = Omit<RunRecord, 'id'> & { _id: string };
export type LeaseDoc = { _id: string; holder: string; expiresAt: number };
export type StateDoc = { _id: string; value: unknown };

type Guard = <T>(fn: () => Promise<T>) => Promise<T>;

export class MongoRuns implements RunRepository {
  constructor(
    private readonly runs: () => Collection<RunDoc>,
    private readonly guard: Guard,
  ) {}

  async create(run: RunRecord): Promise<void> {
    const { id, ...rest } = run;
    try {
      await this.runs().insertOne({ _id: id, ...rest });
    } catch (error) {
      if (error instanceof MongoServerError && error.code === 11000)
        throw new VisorError('conflict', `run ${id} exists already`);
      throw error;
    }
  }

  async update(run: RunRecord): Promise<void> {
    const { id, ...rest } = run;
    const result = await this.guard(() => this.runs().replaceOne({ _id: id }, rest));
    if (result.matchedCount === 0) throw new VisorError('notFound', `no run ${id}`);
  }

  async get(id: string): Promise<RunRecord | undefined> {
    const doc = await this.guard(() => this.runs().findOne({ _id: id }));
    return doc ? toRun(doc) : undefined;
  }

  async list(query: { target?: string; limit?: number } = {}): Promise<RunRecord[]> {
    const docs = await this.guard(() =>
      this.runs()
        .find(query.target === undefined ? {} : { target: query.target }, {
          sort: { startedAt: -1, _id: -1 },
          limit: query.limit ?? 100,
        })
        .toArray(),
    );
    return docs.map(toRun);
  }

  async prune(target: string, keep: number): Promise<number> {
    const keepIds = (
      await this.guard(() =>
        this.runs()
          .find({ target }, { sort: { startedAt: -1, _id: -1 }, limit: keep, projection: { _id: 1 } })
          .toArray(),
      )
    ).map((d) => d._id);
    const result = await this.guard(() => this.runs().deleteMany({ target, _id: { $nin: keepIds } }));
    return result.deletedCount;
  }
}

function toRun(doc: RunDoc): RunRecord {
  const { _id, ...rest } = doc;
  return { id: _id, ...rest };
}

export class MongoLeases implements LeaseRepository {
  constructor(
    private readonly leases: () => Collection<LeaseDoc>,
    private readonly guard: Guard,
  ) {}

  async acquire(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<Lease | undefined> {
    const expiresAt = now + ttlMs;
    try {
      // One atomic server-side step: match our own or an expired lease, or insert a new one.
      await this.leases().findOneAndUpdate(
        { _id: name, $or: [{ holder }, { expiresAt: { $lte: now } }] },
        { $set: { holder, expiresAt } },
        { upsert: true },
      );
      return { name, holder, expiresAt };
    } catch (error) {
      // The upsert collided with a live lease held by someone else.
      if (error instanceof MongoServerError && error.code === 11000) return undefined;
      return this.guard(() => Promise.reject(error));
    }
  }

  async release(name: string, holder: string): Promise<void> {
    await this.guard(() => this.leases().deleteOne({ _id: name, holder }));
  }

  async get(name: string): Promise<Lease | undefined> {
    const doc = await this.guard(() => this.leases().findOne({ _id: name }));
    return doc ? { name, holder: doc.holder, expiresAt: doc.expiresAt } : undefined;
  }
}

export class MongoState implements StateRepository {
  constructor(
    private readonly state: () => Collection<StateDoc>,
    private readonly guard: Guard,
  ) {}

  async get<T = unknown>(key: string): Promise<T | undefined> {
    const doc = await this.guard(() => this.state().findOne({ _id: key }));
    return doc ? (doc.value as T) : undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    await this.guard(() => this.state().replaceOne({ _id: key }, { value }, { upsert: true }));
  }

  async delete(key: string): Promise<void> {
    await this.guard(() => this.state().deleteOne({ _id: key }));
  }

  async list<T = unknown>(prefix: string): Promise<[string, T][]> {
    const docs = await this.guard(() =>
      this.state()
        .find({ _id: { $gte: prefix, $lt: `${prefix}\uffff` } }, { sort: { _id: 1 } })
        .toArray(),
    );
    return docs.map((d) => [d._id, d.value as T]);
  }
}
