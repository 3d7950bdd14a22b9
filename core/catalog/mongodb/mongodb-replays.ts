import { MongoServerError, type Collection } from 'mongodb';
import type { ReplayRepository } from '../port.js';

export type ReplayDoc = { _id: string; expiresAt: Date };

type Guard = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * The replay memory in MongoDB: one document per accepted signature. A TTL index removes
 * expired ones (MongoDB sweeps about once a minute, so expiry is also checked here); the
 * unique _id makes the check-and-record one atomic step across every server on the catalog.
 */
export class MongoReplays implements ReplayRepository {
  constructor(
    private readonly replays: () => Collection<ReplayDoc>,
    private readonly guard: Guard,
  ) {}

  async remember(key: string, expiresAt: number, now = Date.now()): Promise<boolean> {
    try {
      await this.replays().insertOne({ _id: key, expiresAt: new Date(expiresAt) });
      return true;
    } catch (error) {
      if (!(error instanceof MongoServerError && error.code === 11000)) return this.guard(() => Promise.reject(error));
    }
    // Recorded already: a replay, unless that entry expired and the TTL monitor has not swept it yet.
    const taken = await this.guard(() =>
      this.replays().updateOne(
        { _id: key, expiresAt: { $lte: new Date(now) } },
        { $set: { expiresAt: new Date(expiresAt) } },
      ),
    );
    return taken.modifiedCount === 1;
  }

  async prune(now = Date.now()): Promise<number> {
    const result = await this.guard(() => this.replays().deleteMany({ expiresAt: { $lte: new Date(now) } }));
    return result.deletedCount;
  }
}
