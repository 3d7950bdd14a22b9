import { describe, expect, it } from 'vitest';
import { Limiter } from './limiter.js';

/** Holds a slot until released (at once when released before it got one); `log` records who got a slot. */
function holder(limiter: Limiter, key: string, log: string[]) {
  let release: (() => void) | undefined;
  let released = false;
  const done = limiter.run(
    () =>
      new Promise<void>((resolve) => {
        log.push(key);
        release = resolve;
        if (released) resolve();
      }),
    key,
  );
  return {
    done,
    release: () => {
      released = true;
      release?.();
    },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('limiter', () => {
  it('without sharing, one key may hold every slot', async () => {
    const limiter = new Limiter(3);
    const log: string[] = [];
    const held = [0, 1, 2, 3].map(() => holder(limiter, 'a', log));
    await tick();
    expect(log).toEqual(['a', 'a', 'a']);
    held[0]!.release();
    await tick();
    await tick();
    expect(log).toHaveLength(4);
    for (const h of held.slice(1)) h.release();
  });

  it('shared: one key never takes the last slot, and a freed slot goes to the key holding fewest', async () => {
    const limiter = new Limiter(3, { shared: true });
    const log: string[] = [];
    const slow = [0, 1, 2, 3].map(() => holder(limiter, 'slow', log));
    await tick();
    expect(log).toEqual(['slow', 'slow']);
    const fast = [0, 1].map(() => holder(limiter, 'fast', log));
    await tick();
    // The slot left free goes to the other key at once; its second action waits for a slot.
    expect(log).toEqual(['slow', 'slow', 'fast']);
    slow[0]!.release();
    await tick();
    await tick();
    // slow and fast hold one each: a tie, so the oldest waiter (slow's third) goes first.
    expect(log.slice(3)).toEqual(['slow']);
    // Now slow holds two, all it may: the freed slot goes to fast, though slow's fourth waited longer.
    fast[0]!.release();
    await tick();
    await tick();
    expect(log.slice(4)).toEqual(['fast']);
    for (const h of [...slow, ...fast]) h.release();
    await Promise.all([...slow, ...fast].map((h) => h.done));
    expect(log.filter((k) => k === 'slow')).toHaveLength(4);
  });
});
