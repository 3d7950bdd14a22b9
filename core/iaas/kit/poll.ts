import { setTimeout as sleep } from 'node:timers/promises';
import { isRetryable, VisorError } from '../../errors.js';

export interface PollOptions<T> {
  /** Reads the state once (e.g. GET the image). */
  read: (signal: AbortSignal) => Promise<T>;
  /**
   * True when the state is final and good; false to read again after `intervalMs`. Throws for a
   * state that can never become good (failed, deleted meanwhile).
   */
  done: (value: T) => boolean | Promise<boolean>;
  intervalMs: number;
  /** Ends the wait (a Deadline's signal); its reason is what is thrown. */
  signal: AbortSignal;
  /**
   * A read that fails with a retryable kind (a lost connection) is tried again after the
   * interval instead of ending the wait: one lost status read must not throw away an upload
   * that may well have worked.
   */
  retryReads?: boolean;
  /** Told about each read that failed and is tried again (for a debug line). */
  onReadFailure?: (error: unknown) => void;
}

/**
 * Reads until `done` says the cloud is there, pausing `intervalMs` between reads: the one
 * poll-until-ready loop of every adapter. It ends with the value, with what `done` or a read
 * threw, or with the signal's reason when the signal aborts (a wait never outlives its deadline).
 */
export async function pollUntil<T>(options: PollOptions<T>): Promise<T> {
  const { signal } = options;
  for (;;) {
    ended(signal);
    let value: T;
    try {
      value = await options.read(signal);
    } catch (error) {
      if (!options.retryReads || !isRetryable(error) || signal.aborted) throw error;
      options.onReadFailure?.(error);
      await pause(options.intervalMs, signal);
      continue;
    }
    if (await options.done(value)) return value;
    await pause(options.intervalMs, signal);
  }
}

/** Waits `ms`, or throws the signal's reason as soon as it aborts. */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    ended(signal);
    throw new VisorError('unavailable', 'aborted while waiting');
  }
}

/** Throws the signal's reason (a VisorError when it came from a Deadline) once it has aborted. */
function ended(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason: unknown = signal.reason;
  throw reason instanceof Error ? reason : new VisorError('unavailable', 'aborted while waiting');
}
