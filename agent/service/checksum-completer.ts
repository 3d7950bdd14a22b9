import type { Catalog } from '../../core/catalog/port.js';
import { isVisorError } from '../../core/errors.js';
import type { Clock } from '../../core/image/image.js';
import { deferredChecksums, type Image } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import type { Store } from '../../core/store/port.js';
import { completeChecksums } from './checksum-completion.js';

export interface ChecksumCompleterOptions {
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  logger: Logger;
  clock: Clock;
  /** How often a running completion tells the catalog it is alive (as uploads do). */
  heartbeatMs: number;
  /** Pending digests untouched this long belong to a server that stopped: this one takes them over. */
  staleMs: number;
}

/**
 * Computes, one image at a time and off the request path, the digests that uploads left
 * pending (md5, sha512: sha256 is computed as the bytes arrive). The work is in the catalog, not
 * in this process: an image stays `checksumsPending` until its digests are recorded, so a crash
 * at any point loses nothing — on start every pending image is queued again, and pending
 * images another server stopped working on are taken over once they go stale.
 */
export class ChecksumCompleter {
  readonly #o: ChecksumCompleterOptions;
  readonly #queue: string[] = [];
  readonly #queued = new Set<string>();
  readonly #abort = new AbortController();
  #running: Promise<void> | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #idle: (() => void)[] = [];

  constructor(options: ChecksumCompleterOptions) {
    this.#o = options;
  }

  /** Queues an image whose digests are pending (nothing happens when none are). */
  enqueue(image: Pick<Image, 'id' | 'checksumsPending'>): void {
    if (this.#abort.signal.aborted || !image.checksumsPending?.length || this.#queued.has(image.id)) return;
    this.#queued.add(image.id);
    this.#queue.push(image.id);
    this.#running ??= this.#drain();
  }

  /**
   * Queues the pending images of the catalog: all of them (at start: whatever this server left
   * when it stopped), or those untouched for `olderThanMs` (whatever another server left).
   * Returns how many were queued.
   */
  async resume(olderThanMs?: number): Promise<number> {
    let queued = 0;
    const now = this.#o.clock.now().getTime();
    for (const algorithm of deferredChecksums) {
      let marker: string | undefined;
      do {
        const page = await this.#o.catalog.images.list({
          filters: { checksumsPending: algorithm, status: 'available' },
          limit: 500,
          ...(marker ? { marker } : {}),
        });
        for (const image of page.items) {
          if (olderThanMs !== undefined && now - Date.parse(image.updatedAt) < olderThanMs) continue;
          if (!this.#queued.has(image.id)) queued++;
          this.enqueue(image);
        }
        marker = page.nextMarker;
      } while (marker);
    }
    if (queued > 0) this.#o.logger.info('digests of earlier uploads queued', { count: queued });
    return queued;
  }

  /** Also takes over, every `staleMs`, the pending images other servers stopped working on. */
  start(): void {
    this.#sweeper ??= setInterval(() => {
      this.resume(this.#o.staleMs).catch((error: unknown) => {
        this.#o.logger.warn('cannot list images with pending digests', { error });
      });
    }, this.#o.staleMs);
    this.#sweeper.unref();
  }

  /** Resolves once the queue is empty. */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stops: the image being worked on stays pending (the next start takes it up again). */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#abort.abort();
    this.#queue.length = 0;
    await this.#running;
  }

  async #drain(): Promise<void> {
    try {
      for (let id = this.#queue.shift(); id !== undefined; id = this.#queue.shift()) {
        try {
          await this.#complete(id);
        } finally {
          this.#queued.delete(id);
        }
        if (this.#abort.signal.aborted) break;
      }
    } finally {
      this.#running = undefined;
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  async #complete(id: string): Promise<void> {
    const { catalog, logger } = this.#o;
    const image = await catalog.images.find(id).catch(() => undefined);
    if (!image?.checksumsPending?.length || image.status !== 'available') return;
    const started = Date.now();
    // Keeps updatedAt fresh, so that other servers do not take the work for abandoned.
    const heartbeat = setInterval(() => void this.#touch(id), this.#o.heartbeatMs);
    heartbeat.unref();
    try {
      const result = await completeChecksums(catalog.images, this.#o.stores, image, this.#abort.signal);
      if (result.outcome === 'completed') {
        logger.info('digests computed', { id, pending: image.checksumsPending, ms: Date.now() - started });
      } else if (result.outcome === 'damaged') {
        logger.error('stored image damaged: taken out of reach', { id, error: result.error });
      }
    } catch (error) {
      if (this.#abort.signal.aborted) return;
      // The store or the catalog failed: the image stays pending and is taken up again later.
      const level = isVisorError(error, 'notFound') ? 'info' : 'warn';
      logger[level]('cannot compute the digests of an image yet', { id, error });
    } finally {
      clearInterval(heartbeat);
    }
  }

  async #touch(id: string): Promise<void> {
    const images = this.#o.catalog.images;
    const image = await images.find(id).catch(() => undefined);
    if (image?.status === 'available' && image.checksumsPending?.length)
      await images.update(id, image.revision, {}).catch(() => undefined);
  }
}
