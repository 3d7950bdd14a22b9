import { pipeline, type Readable } from 'node:stream';
import type { StoreInstance } from '../../core/config/load.js';
import { RateLimiter, throttle } from '../../core/transfer/rate-limit.js';
import { Limiter } from './limiter.js';

/** What transfers through one cloud or one store may take together: a token bucket and a number of slots. */
export interface TransferLimits {
  rate?: RateLimiter;
  slots?: Limiter;
}

/** One bucket and one set of slots per store with limits, shared by every sync of the runtime. */
export function storeLimitsOf(
  stores: Readonly<Record<string, StoreInstance>>,
  shared = true,
): Map<string, TransferLimits> {
  const out = new Map<string, TransferLimits>();
  for (const [name, store] of Object.entries(stores)) {
    const limits: TransferLimits = {
      ...(store.maxBandwidth ? { rate: new RateLimiter(store.maxBandwidth) } : {}),
      ...(store.concurrency ? { slots: new Limiter(store.concurrency, { shared }) } : {}),
    };
    if (limits.rate || limits.slots) out.set(name, limits);
  }
  return out;
}

/**
 * `stream` paced by each bucket given (every chunk waits for its bytes in all of them). An error of
 * the source reaches the returned stream; destroying the returned stream destroys the source.
 */
export function paced(stream: Readable, rates: readonly (RateLimiter | undefined)[], signal?: AbortSignal): Readable {
  const buckets = rates.filter((r): r is RateLimiter => r !== undefined);
  if (buckets.length === 0) return stream;
  const stages = buckets.map((bucket) => throttle(bucket, signal));
  return pipeline([stream, ...stages], () => undefined) as unknown as Readable;
}
