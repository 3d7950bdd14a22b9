import { isRetryable, VisorError } from '../../core/errors.js';

export interface RetryOptions {
  attempts: number;
  /** First backoff in ms; doubled each time, with full jitter. */
  backoffMs: number;
  signal?: AbortSignal;
  onRetry?: (attempt: number, error: unknown, delayMs: number) => void;
  random?: () => number;
}

/** Retries retryable error kinds (unavailable, timeout) with exponential backoff and jitter; others fail at once. */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<{ value: T; attempts: number }> {
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return { value: await fn(attempt), attempts: attempt };
    } catch (error) {
      if (!isRetryable(error) || attempt >= options.attempts || options.signal?.aborted)
        throw Object.assign(error as object, { attempts: attempt });
      const cap = options.backoffMs * 2 ** (attempt - 1);
      const delay = Math.round(cap / 2 + (random() * cap) / 2);
      options.onRetry?.(attempt, error, delay);
      await sleep(delay, options.signal);
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new VisorError('timeout', 'aborted'));
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(new VisorError('timeout', 'aborted'));
    }
    signal?.addEventListener('abort', abort, { once: true });
  });
}

/**
 * Runs `fn` with a deadline: when it passes, `fn`'s signal aborts and the result is a timeout
 * error — but only after `fn` had up to `cleanupMs` to clean up (a driver deleting the half-made
 * image), so that nothing is left running behind the caller's back.
 */
export async function withTimeout<T>(
  ms: number,
  what: string,
  parent: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
  cleanupMs = 120_000,
): Promise<T> {
  const controller = new AbortController();
  const onParent = () => controller.abort(parent?.reason);
  parent?.addEventListener('abort', onParent, { once: true });
  if (parent?.aborted) controller.abort(parent.reason);
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const running = fn(controller.signal);
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new VisorError('timeout', `${what} took longer than ${Math.round(ms / 1000)}s`));
      resolve();
    }, ms);
  });
  try {
    const first = await Promise.race([
      running.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      deadline.then(() => undefined),
    ]);
    if (first && 'value' in first) return first.value;
    if (first && !timedOut) throw first.error;
    // Timed out: give the aborted work its cleanup time, then report the timeout.
    await Promise.race([running.catch(() => undefined), new Promise((r) => setTimeout(r, cleanupMs).unref())]);
    throw new VisorError('timeout', `${what} took longer than ${Math.round(ms / 1000)}s`);
  } finally {
    clearTimeout(timer);
    parent?.removeEventListener('abort', onParent);
  }
}
