import { setTimeout as sleep } from 'node:timers/promises';
import { isVisorError, VisorError } from '../../errors.js';
import { silentLogger, type Logger } from '../../logging/logger.js';

/**
 * How long a driver may spend removing what a failed call left behind. The agent gives an
 * aborted action the same grace (withTimeout's cleanup time), so the removal can finish.
 */
export const cleanupMs = 120_000;

/** Kinds worth another try while removing: the cloud is busy with the object (the tail of an import). */
const transient = new Set(['conflict', 'unavailable', 'timeout']);

export interface CleanupOptions {
  /** What is removed, as the message names it: "image 3f2b…", "VMS/u1/debian.img". */
  what: string;
  logger?: Logger;
  /** Tries of `remove` when it fails with conflict, unavailable or timeout (default 5). */
  attempts?: number;
  /** Pause after the first failed try, growing with each (default 500 ms). */
  backoffMs?: number;
}

/**
 * Removes what a failed call left in the cloud and says so in the error: the result is
 * `failure` (same kind and cause) with "; <what> was deleted" or "; deleting <what> failed too:
 * <why>" appended, and `details.leftover` naming what is still there. Never throws: the call's
 * own failure is what the caller must see. `remove` gets its own signal, bounded by `cleanupMs`,
 * because the call's deadline is usually what ran out; "not found" counts as removed.
 */
export async function cleanUpAfter(
  failure: VisorError,
  remove: (signal: AbortSignal) => Promise<void>,
  options: CleanupOptions,
): Promise<VisorError> {
  const left = await removeQuietly(remove, options);
  const outcome = left ? `deleting ${options.what} failed too: ${left.message}` : `${options.what} was deleted`;
  return new VisorError(failure.kind, `${failure.message}; ${outcome}`, {
    cause: failure.cause ?? failure,
    details: { ...failure.details, ...(left ? { leftover: options.what } : {}) },
  });
}

/**
 * Runs `remove` with retries for transient kinds, under a signal bounded by `cleanupMs`.
 * Returns the last error when the object is still there (logged), undefined when it is gone.
 */
export async function removeQuietly(
  remove: (signal: AbortSignal) => Promise<void>,
  options: CleanupOptions,
): Promise<VisorError | undefined> {
  const logger = options.logger ?? silentLogger;
  const attempts = options.attempts ?? 5;
  const signal = AbortSignal.timeout(cleanupMs);
  let last: VisorError | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      await remove(signal);
      return undefined;
    } catch (error) {
      if (isVisorError(error, 'notFound')) return undefined;
      last = isVisorError(error)
        ? error
        : new VisorError('internal', (error as Error)?.message ?? String(error), { cause: error });
      if (!transient.has(last.kind) || signal.aborted || attempt === attempts) break;
      await sleep((options.backoffMs ?? 500) * attempt);
    }
  }
  logger.error(`could not delete ${options.what} after a failed call: it is left in the cloud`, {
    error: last?.message,
  });
  return last;
}
