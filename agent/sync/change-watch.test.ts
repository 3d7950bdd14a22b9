import { describe, expect, it } from 'vitest';
import type { ImageChange, ImageChangeBatch, ImageChangeFeed } from '../../core/catalog/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { makeImage } from '../../core/testing/images.js';
import { ChangeWatch, type WatchedTarget } from './change-watch.js';

/** A feed kept in an array, as a catalog's would be; `gapAt` makes a reader at that cursor miss changes. */
class ArrayFeed implements ImageChangeFeed {
  readonly changes: ImageChange[] = [];
  gapAt: number | undefined;
  async cursor(): Promise<number> {
    return this.changes.length;
  }
  async since(since: number, limit = 1000): Promise<ImageChangeBatch> {
    const changes = this.changes.slice(since, since + limit);
    return { changes, cursor: since + changes.length, gap: since === this.gapAt };
  }
  write(name: string): void {
    const after = makeImage({ name });
    this.changes.push({ seq: this.changes.length + 1, id: after.id, op: 'create', after });
  }
}

function setup(busy = new Set<string>()) {
  const feed = new ArrayFeed();
  let now = 0;
  const woken: [string, number, number][] = [];
  const target = (name: string, prefix: string): WatchedTarget => ({
    name,
    selects: (image) => image.name.startsWith(prefix),
    debounceMs: 2000,
    maxDelayMs: 10_000,
  });
  const watch = new ChangeWatch({
    feed,
    targets: [target('a', 'a-'), target('b', 'b-')],
    wake: (name, changes) => {
      if (busy.has(name)) return false;
      woken.push([name, changes, now]);
      return true;
    },
    pollMs: 1000,
    logger: silentLogger,
    now: () => now,
  });
  const tick = async (ms: number) => {
    now += ms;
    await watch.poll();
  };
  return { feed, watch, woken, tick, busy };
}

describe('change watch', () => {
  it('wakes only the clouds whose selector a change concerns, once the changes stopped for the debounce', async () => {
    const { feed, watch, woken, tick } = setup();
    await watch.start();
    feed.write('a-1');
    feed.write('c-1');
    await tick(1000);
    await tick(1000);
    expect(woken).toEqual([]);
    await tick(1000);
    expect(woken).toEqual([['a', 1, 3000]]);
    await tick(5000);
    expect(woken).toHaveLength(1);
    await watch.stop();
  });

  it('makes one wake of a burst, and at most maxDelay after its first change when it never pauses', async () => {
    const { feed, watch, woken, tick } = setup();
    await watch.start();
    for (let i = 0; i < 15; i++) {
      for (let j = 0; j < 10; j++) feed.write(`b-${i}-${j}`);
      await tick(1000);
    }
    // The first change was read at 1000: woken at 11000, when maxDelay is up, with what came until then.
    expect(woken).toEqual([['b', 110, 11_000]]);
    await tick(1000);
    await tick(1000);
    expect(woken).toEqual([
      ['b', 110, 11_000],
      ['b', 40, 17_000],
    ]);
    await watch.stop();
  });

  it('keeps the changes for a cloud whose run is going on, and wakes it when the run is over', async () => {
    const { feed, watch, woken, tick, busy } = setup(new Set(['a']));
    await watch.start();
    feed.write('a-1');
    await tick(1000);
    await tick(3000);
    expect(woken).toEqual([]);
    busy.clear();
    await tick(1000);
    expect(woken).toEqual([['a', 1, 5000]]);
    await watch.stop();
  });

  it('starts from the end of the feed, and wakes every cloud when it missed changes', async () => {
    const { feed, watch, woken, tick } = setup();
    feed.write('a-before');
    await watch.start();
    await tick(3000);
    expect(woken).toEqual([]);
    feed.gapAt = 1;
    feed.write('c-2');
    await tick(1000);
    await tick(2000);
    expect(woken.map(([name]) => name).sort()).toEqual(['a', 'b']);
    await watch.stop();
  });
});
