import type { ImageChange, ImageChangeFeed } from '../../core/catalog/port.js';
import { toVisorError } from '../../core/errors.js';
import type { Image } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';

/** One cloud as the watcher sees it: which images it cares about, and how long it lets a burst settle. */
export interface WatchedTarget {
  name: string;
  /** The cloud's selector: a change matters when the image matched before or matches after it. */
  selects: (image: Image) => boolean;
  debounceMs: number;
  maxDelayMs: number;
}

export interface ChangeWatchOptions {
  feed: ImageChangeFeed;
  targets: readonly WatchedTarget[];
  /** Starts a run of the target; false when it cannot start now (a run is going on): asked again later. */
  wake: (target: string, changes: number) => boolean;
  pollMs: number;
  logger: Logger;
  now?: () => number;
}

interface Pending {
  first: number;
  last: number;
  changes: number;
}

/** Pages read per poll at most: a big import is read over a few polls rather than in one long stall. */
const pagesPerPoll = 20;

/**
 * Polls the catalog's change feed (one cheap query when nothing changed) and wakes the clouds a
 * change concerns, debounced: a cloud runs once the changes stopped for its debounce time, or its
 * maxDelay after the first, so a burst of writes is one run. Works across processes: the feed is in
 * the catalog, whoever wrote to it.
 */
export class ChangeWatch {
  readonly #options: ChangeWatchOptions;
  readonly #pending = new Map<string, Pending>();
  readonly #now: () => number;
  #cursor: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #stopped = false;
  #failing = false;

  constructor(options: ChangeWatchOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Starts from the feed's current end: what changed before is the schedule's business. */
  async start(): Promise<void> {
    await this.#options.feed.cursor().then(
      (cursor) => (this.#cursor = cursor),
      // Unreachable now: the first poll that reaches the catalog starts from its end then.
      () => undefined,
    );
    this.#arm();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#polling;
  }

  /** One poll (what the timer runs): reads what changed, then wakes the clouds whose time has come. */
  async poll(): Promise<void> {
    try {
      await this.#read();
      if (this.#failing) this.#options.logger.info('reading the catalog change feed works again');
      this.#failing = false;
    } catch (error) {
      // The catalog is unreachable for now: the schedule still runs; say so once, not every second.
      if (!this.#failing)
        this.#options.logger.warn('cannot read the catalog change feed', { error: toVisorError(error) });
      this.#failing = true;
    }
    this.#fire();
  }

  #arm(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#polling = this.poll().finally(() => {
        this.#polling = undefined;
        this.#arm();
      });
    }, this.#options.pollMs);
    this.#timer.unref();
  }

  async #read(): Promise<void> {
    const { feed } = this.#options;
    if (this.#cursor === undefined) this.#cursor = await feed.cursor();
    const newest = await feed.cursor();
    if (newest === this.#cursor) return;
    for (let page = 0; page < pagesPerPoll; page++) {
      const batch = await feed.since(this.#cursor);
      if (batch.gap) {
        // Changes were missed (the feed moved on, or the catalog was replaced): any cloud may be concerned.
        this.#options.logger.warn('missed catalog changes; every cloud syncs', {
          from: this.#cursor,
          to: batch.cursor,
        });
        for (const target of this.#options.targets) this.#mark(target, 1);
      }
      for (const change of batch.changes) this.#note(change);
      const moved = batch.cursor !== this.#cursor;
      this.#cursor = batch.cursor;
      if (!moved || batch.changes.length === 0) return;
    }
  }

  #note(change: ImageChange): void {
    for (const target of this.#options.targets) {
      const concerned =
        (change.before !== undefined && target.selects(change.before)) ||
        (change.after !== undefined && target.selects(change.after));
      if (concerned) this.#mark(target, 1);
    }
  }

  #mark(target: WatchedTarget, changes: number): void {
    const now = this.#now();
    const pending = this.#pending.get(target.name);
    if (pending) {
      pending.last = now;
      pending.changes += changes;
    } else this.#pending.set(target.name, { first: now, last: now, changes });
  }

  #fire(): void {
    const now = this.#now();
    for (const target of this.#options.targets) {
      const pending = this.#pending.get(target.name);
      if (!pending) continue;
      const quiet = now - pending.last >= target.debounceMs;
      const overdue = now - pending.first >= target.maxDelayMs;
      if (!quiet && !overdue) continue;
      // A run going on may have planned before these changes: they wait for the next one.
      if (this.#options.wake(target.name, pending.changes)) this.#pending.delete(target.name);
    }
  }
}
