import type { Collection } from 'mongodb';
import type { Image } from '../../image/model.js';
import { CHANGE_FEED_KEEP, type ImageChange, type ImageChangeBatch, type ImageChangeFeed } from '../port.js';

export type ChangeDoc = { _id: number; id: string; op: ImageChange['op']; before?: Image; after?: Image; at: Date };
export type CounterDoc = { _id: string; seq: number };

type Guard = <T>(fn: () => Promise<T>) => Promise<T>;

/** A hole in the feed older than this is a writer that died between taking its number and writing it. */
const holeGraceMs = 30_000;

/**
 * The change feed in MongoDB (change streams need a replica set; this works on any server): a
 * writer takes the next number from a counter document, then writes its change. Two writers may
 * finish in either order, so a reader stops before a hole, until the hole is filled or old enough
 * to be a writer that died.
 */
export class MongoChanges implements ImageChangeFeed {
  constructor(
    private readonly changes: () => Collection<ChangeDoc>,
    private readonly counters: () => Collection<CounterDoc>,
    private readonly guard: Guard,
  ) {}

  /**
   * Records a write that succeeded. Best effort: the image is written already, and failing its
   * request now would report a write that happened as failed; an agent that misses this change
   * still syncs on its schedule.
   */
  async record(change: Omit<ImageChange, 'seq'>): Promise<void> {
    try {
      const counter = await this.counters().findOneAndUpdate(
        { _id: 'image_changes' },
        { $inc: { seq: 1 } },
        { upsert: true, returnDocument: 'after' },
      );
      const seq = counter?.seq;
      if (seq === undefined) return;
      await this.changes().insertOne({ _id: seq, ...change, at: new Date() });
      await this.changes().deleteMany({ _id: { $lte: seq - CHANGE_FEED_KEEP } });
    } catch {
      // See above: the write stands.
    }
  }

  async cursor(): Promise<number> {
    const counter = await this.guard(() => this.counters().findOne({ _id: 'image_changes' }));
    return counter?.seq ?? 0;
  }

  async since(since: number, limit = 1000, now = Date.now()): Promise<ImageChangeBatch> {
    const newest = await this.cursor();
    const oldestDoc = await this.guard(() => this.changes().findOne({}, { sort: { _id: 1 } }));
    const docs = await this.guard(() =>
      this.changes()
        .find({ _id: { $gt: since } })
        .sort({ _id: 1 })
        .limit(Math.max(1, limit))
        .toArray(),
    );
    if (since > newest) return { changes: [], cursor: newest, gap: true };
    const changes: ImageChange[] = [];
    let expected = since + 1;
    for (const doc of docs) {
      if (doc._id !== expected && now - doc.at.getTime() < holeGraceMs) break;
      changes.push(toChange(doc));
      expected = doc._id + 1;
    }
    const forgotten = oldestDoc !== null && since < oldestDoc._id - 1 && now - oldestDoc.at.getTime() >= holeGraceMs;
    return { changes, cursor: changes[changes.length - 1]?.seq ?? since, gap: forgotten };
  }
}

function toChange(doc: ChangeDoc): ImageChange {
  return {
    seq: doc._id,
    id: doc.id,
    op: doc.op,
    ...(doc.before ? { before: doc.before } : {}),
    ...(doc.after ? { after: doc.after } : {}),
  };
}
