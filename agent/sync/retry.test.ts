import { describe, expect, it } from 'vitest';
import { VisorError, type ErrorKind } from '../../core/errors.js';
import { Limiter } from './limiter.js';
import { withRetry, withTimeout } from './retry.js';

const failing = (kinds: ErrorKind[]) => {
  let calls = 0;
  return {
    fn: async () => {
      const kind = kinds[calls++];
      if (kind) throw new VisorError(kind, `attempt ${calls} failed`);
      return 'ok';
    },
    calls: () => calls,
  };
};

describe('withRetry', () => {
  it('retries retryable kinds with growing, jittered delays, then succeeds', async () => {
    const f = failing(['unavailable', 'timeout']);
    const delays: number[] = [];
    const result = await withRetry(f.fn, {
      attempts: 3,
      backoffMs: 10,
      onRetry: (_a, _e, d) => delays.push(d),
      random: () => 0.5,
    });
    expect(result).toEqual({ value: 'ok', attempts: 3 });
    expect(delays).toEqual([8, 15]); // cap/2 + random*cap/2 with caps 10, 20
  });

  it('does not retry terminal kinds', async () => {
    for (const kind of [
      'invalidInput',
      'auth',
      'forbidden',
      'notFound',
      'conflict',
      'integrity',
      'unsafe',
      'unsupported',
    ] as const) {
      const f = failing([kind, kind]);
      await expect(withRetry(f.fn, { attempts: 5, backoffMs: 1 })).rejects.toMatchObject({ kind, attempts: 1 });
      expect(f.calls()).toBe(1);
    }
  });

  it('gives up after the last attempt and says how many were made', async () => {
    const f = failing(['unavailable', 'unavailable', 'unavailable', 'unavailable']);
    await expect(withRetry(f.fn, { attempts: 3, backoffMs: 1 })).rejects.toMatchObject({
      kind: 'unavailable',
      attempts: 3,
    });
    expect(f.calls()).toBe(3);
  });

  it('stops waiting when aborted', async () => {
    const controller = new AbortController();
    const f = failing(['unavailable', 'unavailable']);
    const started = Date.now();
    const pending = withRetry(f.fn, { attempts: 3, backoffMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toBeDefined();
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('withTimeout', () => {
  it('returns what finishes in time', async () => {
    await expect(withTimeout(1000, 'quick', undefined, async () => 42)).resolves.toBe(42);
  });

  it('aborts what runs too long, waits for its clean-up, then reports a timeout', async () => {
    let cleanedUp = false;
    const slow = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => {
        signal.addEventListener('abort', () => {
          setTimeout(() => {
            cleanedUp = true;
            reject(new Error('aborted'));
          }, 50);
        });
      });
    await expect(withTimeout(30, 'upload of x', undefined, slow)).rejects.toMatchObject({
      kind: 'timeout',
      message: expect.stringMatching(/upload of x took longer/),
    });
    expect(cleanedUp).toBe(true);
  });

  it('passes on errors of the work itself', async () => {
    await expect(
      withTimeout(1000, 'x', undefined, async () => Promise.reject(new VisorError('forbidden', 'no'))),
    ).rejects.toMatchObject({ kind: 'forbidden' });
  });
});

describe('Limiter', () => {
  it('never runs more than its limit at once, and runs everything', async () => {
    const limiter = new Limiter(3);
    let active = 0;
    let peak = 0;
    const done = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        limiter.run(async () => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5));
          active--;
          return i;
        }),
      ),
    );
    expect(done).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(peak).toBe(3);
  });
});
