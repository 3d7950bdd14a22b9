import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Limiter } from '../../agent/sync/limiter.js';
import { syncTarget, type SyncDeps, type Target } from '../../agent/sync/runner.js';
import { storeLimitsOf } from '../../agent/sync/transfer-limits.js';
import type { CreateRequest } from '../../core/iaas/port.js';
import type { Store } from '../../core/store/port.js';
import { memorySyncWorld, type MemorySyncWorld } from '../support/memory-sync.js';

/**
 * Bandwidth and concurrency of sync transfers, per cloud and per store, measured: bytes over wall
 * time, transfers in flight at once. Against the memory cloud, which takes bytes as fast as they
 * come, so every limit seen here is the agent's.
 */

const MiB = 1024 * 1024;
let world: MemorySyncWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/**
 * Counts the creates in flight on a target's driver, and times each: the whole create, and the
 * transfer alone (from opening the content to its last byte; the cloud's checks after it are not
 * the limit's business).
 */
function watched(target: Target) {
  const stats = {
    active: 0,
    max: 0,
    spans: [] as { name: string; start: number; end: number }[],
    transfers: [] as { bytes: number; start: number; end: number }[],
  };
  const driver = target.driver;
  const create = driver.create.bind(driver);
  driver.create = async (request: CreateRequest) => {
    stats.active++;
    stats.max = Math.max(stats.max, stats.active);
    const start = performance.now();
    const open = request.content.open.bind(request.content);
    const content = {
      ...request.content,
      open: async (...args: Parameters<typeof open>) => {
        const opened = performance.now();
        const stream = await open(...args);
        let bytes = 0;
        stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
        stream.once('end', () => stats.transfers.push({ bytes, start: opened, end: performance.now() }));
        return stream;
      },
    };
    try {
      return await create({ ...request, content });
    } finally {
      stats.active--;
      stats.spans.push({ name: request.image.name, start, end: performance.now() });
    }
  };
  return stats;
}

/** Counts the streams open at once on a store (from get until the stream closes). */
function watchedStore(store: Store) {
  const stats = { active: 0, max: 0 };
  const get = store.get.bind(store);
  store.get = async (...args: Parameters<Store['get']>) => {
    const got = await get(...args);
    stats.active++;
    stats.max = Math.max(stats.max, stats.active);
    got.stream.once('close', () => stats.active--);
    return got;
  };
  return stats;
}

function cpu(): () => { cpuMs: number } {
  const start = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(start);
    return { cpuMs: Math.round((used.user + used.system) / 1000) };
  };
}

describe('sync transfer limits', () => {
  it('keeps a cloud at its maxBandwidth: 8 MiB at 2 MiB/s take 4 s (within 10%)', async () => {
    world = await memorySyncWorld();
    await world.addImage('big', randomBytes(8 * MiB));
    const target = world.target({ maxBandwidth: '2MiB' });
    const stats = watched(target);
    const used = cpu();
    const run = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(run.actions.map((a) => a.result)).toEqual(['created']);
    const [transfer] = stats.transfers;
    expect(transfer?.bytes).toBe(8 * MiB);
    const seconds = (transfer!.end - transfer!.start) / 1000;
    console.log(`cloud maxBandwidth 2 MiB/s, 8 MiB: ${seconds.toFixed(2)} s transferring, ${used().cpuMs} ms CPU`);
    expect(seconds).toBeGreaterThanOrEqual(4 * 0.9);
    expect(seconds).toBeLessThanOrEqual(4 * 1.1);
  }, 30_000);

  it('never has more than `concurrency` transfers to a cloud at once, and the bucket is shared by them', async () => {
    world = await memorySyncWorld();
    for (let i = 0; i < 6; i++) await world.addImage(`img-${i}`, randomBytes(MiB));
    const target = world.target({ concurrency: 2, maxBandwidth: '4MiB' });
    const stats = watched(target);
    const started = performance.now();
    const run = await syncTarget(target, world.deps({ limiter: new Limiter(8, { shared: true }) }), {
      trigger: 'manual',
    });
    const seconds = (performance.now() - started) / 1000;
    expect(run.actions.map((a) => a.result)).toEqual(Array(6).fill('created'));
    expect(stats.max).toBe(2);
    // 6 MiB through one 4 MiB/s bucket, whatever the number of transfers: 1.5 s.
    const transfer =
      (Math.max(...stats.transfers.map((s) => s.end)) - Math.min(...stats.transfers.map((s) => s.start))) / 1000;
    console.log(
      `cloud concurrency 2, 6 x 1 MiB at 4 MiB/s: ${transfer.toFixed(2)} s transferring, ${seconds.toFixed(2)} s run`,
    );
    expect(transfer).toBeGreaterThanOrEqual(1.5 * 0.9);
    expect(transfer).toBeLessThanOrEqual(1.5 * 1.1);
  }, 30_000);

  it("keeps a store's limits across clouds: its bandwidth shared by both, one transfer at a time", async () => {
    world = await memorySyncWorld();
    for (let i = 0; i < 2; i++) {
      await world.addImage(`east-${i}`, randomBytes(2 * MiB));
      await world.addImage(`west-${i}`, randomBytes(2 * MiB));
    }
    const east = world.target({ selector: { names: ['east-*'] }, concurrency: 2 }, { project: 'east' }, 'east');
    const west = world.target({ selector: { names: ['west-*'] }, concurrency: 2 }, { project: 'west' }, 'west');
    const reads = watchedStore(world.store);
    const streams = [watched(east), watched(west)];
    const storeLimits = storeLimitsOf({ local: { type: 'file', options: {}, maxBandwidth: 2 * MiB, concurrency: 1 } });
    const deps: SyncDeps = world.deps({ storeLimits, limiter: new Limiter(4, { shared: true }) });
    const used = cpu();
    const started = performance.now();
    const runs = await Promise.all([east, west].map((t) => syncTarget(t, deps, { trigger: 'manual' })));
    const seconds = (performance.now() - started) / 1000;
    for (const run of runs) expect(run.actions.map((a) => a.result)).toEqual(['created', 'created']);
    // One transfer at a time: their durations add up to the time the store was read.
    const transfers = streams.flatMap((s) => s.transfers);
    expect(transfers.reduce((sum, t) => sum + t.bytes, 0)).toBe(8 * MiB);
    const reading = transfers.reduce((sum, t) => sum + (t.end - t.start), 0) / 1000;
    console.log(
      `store 2 MiB/s, concurrency 1, 8 MiB to two clouds: ${reading.toFixed(2)} s transferring, ` +
        `${seconds.toFixed(2)} s in all, ${used().cpuMs} ms CPU`,
    );
    expect(reads.max).toBe(1);
    expect(reading).toBeGreaterThanOrEqual(4 * 0.9);
    expect(reading).toBeLessThanOrEqual(4 * 1.1);
  }, 30_000);

  it('lets a fast cloud sync at full speed beside one throttled hard, not queued behind it', async () => {
    world = await memorySyncWorld();
    for (let i = 0; i < 4; i++) {
      await world.addImage(`slow-${i}`, randomBytes(256 * 1024));
      await world.addImage(`fast-${i}`, randomBytes(2 * MiB));
    }
    const policy = (names: string) => ({ selector: { names: [names] }, concurrency: 4 });
    const slow = world.target({ ...policy('slow-*'), maxBandwidth: '256KiB' }, { project: 'slow' }, 'slow');
    const fast = world.target(policy('fast-*'), { project: 'fast' }, 'fast');
    const slowStats = watched(slow);
    const fastStats = watched(fast);
    // Alone first: how long the fast cloud takes when nothing else runs (then its copies are retired again).
    const aloneWorld = await memorySyncWorld();
    let aloneMs: number;
    try {
      for (let i = 0; i < 4; i++) await aloneWorld.addImage(`fast-${i}`, randomBytes(2 * MiB));
      const alone = aloneWorld.target(policy('fast-*'), { project: 'fast' }, 'fast');
      const t0 = performance.now();
      await syncTarget(alone, aloneWorld.deps({ limiter: new Limiter(4, { shared: true }) }), { trigger: 'manual' });
      aloneMs = performance.now() - t0;
    } finally {
      await aloneWorld.close();
    }
    const deps = world.deps({ limiter: new Limiter(4, { shared: true }) });
    const slowRun = syncTarget(slow, deps, { trigger: 'manual' });
    // The slow cloud takes what it may of the agent's 4 slots before the fast one asks.
    while (slowStats.active < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    const t1 = performance.now();
    const fastRun = await syncTarget(fast, deps, { trigger: 'manual' });
    const besideMs = performance.now() - t1;
    const slowStillGoing = slowStats.active;
    const slowDone = await slowRun;
    const slowMs = Math.max(...slowStats.spans.map((s) => s.end)) - t1;
    console.log(
      `fast cloud (4 x 2 MiB) alone ${aloneMs.toFixed(0)} ms, beside a 256 KiB/s cloud ${besideMs.toFixed(0)} ms; ` +
        `slow cloud done ${slowMs.toFixed(0)} ms after`,
    );
    expect(fastRun.actions.map((a) => a.result)).toEqual(Array(4).fill('created'));
    expect(slowDone.actions.map((a) => a.result)).toEqual(Array(4).fill('created'));
    // Finished while the slow cloud's transfers were still going on, in about the time it takes alone.
    expect(slowStillGoing).toBeGreaterThan(0);
    expect(besideMs).toBeLessThan(Math.max(aloneMs * 2, aloneMs + 500));
    expect(Math.max(...fastStats.spans.map((s) => s.end))).toBeLessThan(Math.max(...slowStats.spans.map((s) => s.end)));
  }, 60_000);
});
