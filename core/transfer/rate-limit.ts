import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A token bucket shared by any number of streams: together they never pass more than
 * `bytesPerSecond` (plus one burst). Waiters are served in order, so a slow consumer cannot
 * starve the others and each stream gets its share.
 */
export class RateLimiter {
  readonly burst: number;
  #available: number;
  #last: number;
  #tail: Promise<void> = Promise.resolve();

  constructor(
    readonly bytesPerSecond: number,
    burst?: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('bytesPerSecond must be positive');
    // A twentieth of a second's worth: smooth at any rate, cheap at high ones.
    this.burst = Math.max(1, Math.floor(burst ?? Math.max(16 * 1024, bytesPerSecond / 20)));
    this.#available = this.burst;
    this.#last = this.now();
  }

  /** Resolves when `bytes` may pass (taken in pieces of at most one burst). */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const turn = this.#tail.then(() => this.#take(bytes, signal));
    this.#tail = turn.catch(() => undefined);
    return turn;
  }

  async #take(bytes: number, signal?: AbortSignal): Promise<void> {
    let left = bytes;
    while (left > 0) {
      const piece = Math.min(left, this.burst);
      this.#refill();
      if (this.#available < piece) {
        await sleep(Math.ceil(((piece - this.#available) * 1000) / this.bytesPerSecond), undefined, signal ? { signal } : {});
        this.#refill();
      }
      this.#available -= piece;
      left -= piece;
    }
  }

  #refill(): void {
    const now = this.now();
    this.#available = Math.min(this.burst, this.#available + ((now - this.#last) * this.bytesPerSecond) / 1000);
    this.#last = now;
  }
}

/** A pass-through stream that holds each chunk until the limiter lets its bytes pass. */
export function throttle(limiter: RateLimiter | undefined, signal?: AbortSignal): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      if (!limiter) {
        done(null, chunk);
        return;
      }
      limiter.take(chunk.length, signal).then(
        () => done(null, chunk),
        (error: unknown) => done(error as Error),
      );
    },
  });
}
