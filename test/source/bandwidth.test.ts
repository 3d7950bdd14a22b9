import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { syncSubscription } from '../../agent/sources/importer.js';
import { HepixSource } from '../../core/source/hepix/hepix-source.js';
import { RateLimiter } from '../../core/transfer/rate-limit.js';
import { FileServer } from './support/file-server.js';
import { hepixList } from './support/hepix-fixtures.js';
import { importHarness } from './support/import-harness.js';

describe('bandwidth and concurrency of subscription downloads', () => {
  it('keeps the downloads of a subscription within maxBandwidth (bytes over time, within 10%)', async () => {
    const server = await new FileServer().start();
    const h = await importHarness();
    try {
      const rate = 1024 * 1024; // 1 MiB/s over all downloads together
      const images = [0, 1, 2].map((i) => ({
        id: `i${i}`,
        title: `image ${i}`,
        version: '1',
        data: randomBytes(1024 * 1024),
        url: server.url(`/img${i}`),
        format: 'RAW',
      }));
      for (const image of images) server.files.set(`/img${image.id.slice(1)}`, image.data);
      server.files.set('/list', hepixList({ signer: { dn: '/CN=x', caDn: '/CN=y' }, version: '1', images }));
      const source = new HepixSource({ url: server.url('/list'), requireSignature: false, allowPrivateNetworks: true });
      const started = performance.now();
      const run = await syncSubscription({ name: 'bw', maxBandwidth: rate, concurrency: 3 }, source, h.deps);
      const seconds = (performance.now() - started) / 1000;
      expect(run.actions.map((a) => a.result)).toEqual(['imported', 'imported', 'imported']);
      const bytes = run.actions.reduce((sum, a) => sum + (a.bytes ?? 0), 0);
      expect(bytes).toBe(3 * 1024 * 1024);
      const measured = bytes / seconds;
      // Never above the limit (one burst of rate/20 allowed), and not far below it either.
      expect(measured).toBeLessThanOrEqual(rate * 1.1);
      expect(measured).toBeGreaterThanOrEqual(rate * 0.8);
      // Shared fairly: the three downloads ran at once and finished close together.
      const times = run.actions.map((a) => a.ms ?? 0);
      expect(Math.min(...times)).toBeGreaterThan(Math.max(...times) * 0.7);
      await source.close();
    } finally {
      await h.close();
      await server.stop();
    }
  }, 60_000);

  it('rate limiter: a shared bucket paces several takers to the rate, measured over time', async () => {
    const limiter = new RateLimiter(2 * 1024 * 1024);
    const samples: [number, number][] = [];
    let passed = 0;
    const started = performance.now();
    await Promise.all(
      [0, 1, 2, 3].map(async () => {
        for (let i = 0; i < 32; i++) {
          await limiter.take(32 * 1024);
          passed += 32 * 1024;
          samples.push([performance.now() - started, passed]);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    expect(passed).toBe(4 * 1024 * 1024);
    expect(passed / seconds).toBeLessThanOrEqual(2 * 1024 * 1024 * 1.1);
    expect(passed / seconds).toBeGreaterThanOrEqual(2 * 1024 * 1024 * 0.9);
    // Every half second window stays within the limit plus one burst.
    for (const [t, n] of samples) {
      const before = samples.filter(([u]) => u <= t - 500).at(-1);
      if (before) expect(n - before[1]).toBeLessThanOrEqual((2 * 1024 * 1024 * (t - before[0])) / 1000 + limiter.burst + 32 * 1024);
    }
  }, 30_000);
});
