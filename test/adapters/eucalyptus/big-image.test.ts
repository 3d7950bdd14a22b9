import { createCipheriv, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleNameOf } from '../../../adapters/eucalyptus/mapper.js';
import type { ContentSource } from '../../../core/iaas/port.js';
import { newImage } from '../../../core/image/image.js';
import type { ImageDraft } from '../../../core/image/model.js';
import { DigestStream } from '../../../core/transfer/digest.js';
import { expectValidBodies, startWorld, type EucalyptusWorld } from './harness.js';

/**
 * One 1 GiB image bundled (tar, gzip level 6, AES in 10 MiB parts as euca2ools does), uploaded
 * to the real S3 peer, registered with the double, unbundled in full by the double (openssl,
 * gunzip, tar) and listed with its markers. The bytes are generated on the fly, never held.
 * VISOR_TEST_SKIP_BIG=1 skips it.
 */

const GiB = 1024 ** 3;
const chunk = 1024 * 1024;

/** Pseudo-random bytes (AES-128-CTR keystream): the same on every open, none kept. */
function generated(size: number, seed: Buffer): () => Readable {
  return () => {
    const cipher = createCipheriv('aes-128-ctr', seed, Buffer.alloc(16));
    const zeros = Buffer.alloc(chunk);
    let left = size;
    return new Readable({
      highWaterMark: chunk,
      read() {
        if (left === 0) return void this.push(null);
        const n = Math.min(chunk, left);
        left -= n;
        this.push(cipher.update(n === chunk ? zeros : zeros.subarray(0, n)));
      },
    });
  };
}

const skipBig =
  process.env['VISOR_TEST_SKIP_BIG'] === '1'
    ? 'VISOR_TEST_SKIP_BIG=1: the 1 GiB Eucalyptus bundle is skipped'
    : undefined;
const started = skipBig ? { skip: skipBig } : await startWorld('euca-big');
const skip = 'skip' in started ? started.skip : undefined;
const world = 'skip' in started ? undefined : (started as EucalyptusWorld);

describe('Eucalyptus: a 1 GiB image', () => {
  afterAll(async () => {
    if (!world) return;
    try {
      await expectValidBodies(world.doubles);
    } finally {
      await world.close();
    }
  });

  it(
    'is bundled, uploaded, registered, unbundled by the CLC and listed with its markers, in bounded memory',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const open = generated(GiB, Buffer.from('visor-euca-1GiB!'));
      const digest = new DigestStream();
      const hashStart = Date.now();
      await pipeline(open(), digest, async (source) => {
        for await (const _ of source) void _;
      });
      const checksums = digest.result().checksums;
      const hashSeconds = (Date.now() - hashStart) / 1000;
      const content: ContentSource = {
        size: GiB,
        checksums,
        diskFormat: 'raw',
        containerFormat: 'bare',
        open: async () => open(),
      };
      const image = newImage({
        name: `visor-euca-big-${randomUUID().slice(0, 8)}`,
        architecture: 'x86_64',
        access: 'private',
        diskFormat: 'raw',
        containerFormat: 'bare',
        properties: { purpose: 'visor 1 GiB test' },
      } as ImageDraft);
      const markers = { agent: 'euca-big-test', imageId: image.id, sha256: checksums.sha256, revision: 1 };
      const double = await world!.double({ pendingMs: 0 });
      const phases: Record<string, number> = {};
      const note = (message: string) => {
        if (message === 'eucalyptus: bundle uploaded') phases['uploaded'] = Date.now();
        if (message === 'eucalyptus: image registered') phases['registered'] = Date.now();
      };
      const logger = { error() {}, warn() {}, debug() {}, info: note, child: () => logger };
      const driver = world!.driver(double, {
        partSize: 10 * 1024 * 1024,
        concurrency: 4,
        gzipLevel: 6,
        pollIntervalMs: 250,
        logger,
      });

      const baseline = process.memoryUsage().rss;
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 200);
      const started = Date.now();
      let sent = 0;
      const cloud = await driver
        .create({ image, markers, content, timeoutMs: 30 * 60_000, onProgress: (n) => (sent = n) })
        .finally(() => clearInterval(sampler));
      const createSeconds = (Date.now() - started) / 1000;
      const bundleSeconds = ((phases['uploaded'] ?? started) - started) / 1000;
      const clcSeconds = (Date.now() - (phases['registered'] ?? Date.now())) / 1000;

      expect(sent).toBe(GiB);
      expect(cloud).toMatchObject({ state: 'active', size: GiB, markers, name: image.name });
      expect(double.bundleChecks.get(cloud.nativeId)).toEqual({
        ok: true,
        size: GiB,
        sha256: checksums.sha256,
        md5: checksums.md5,
      });
      const listed = (await driver.list()).find((i) => i.nativeId === cloud.nativeId);
      expect(listed?.markers).toEqual(markers);
      const parts = (await world!.keys(`bundles/${bundleNameOf(markers)}.part.`)).length;
      expect(parts).toBeGreaterThanOrEqual(103); // 1 GiB + tar header, gzip of random data grows it a little
      expect(parts).toBeLessThanOrEqual(104);
      // Streaming: 4 part buffers of 10 MiB and stream buffers, not the image.
      expect(peak - baseline).toBeLessThan(256 * 1024 * 1024);

      const retireStart = Date.now();
      await driver.retire(cloud.nativeId, 'delete');
      expect(await world!.keys(`bundles/${bundleNameOf(markers)}.`)).toEqual([]);
      const figures =
        `1 GiB into Eucalyptus (double + Swift s3api): create ${createSeconds.toFixed(1)} s ` +
        `(${(1024 / createSeconds).toFixed(0)} MiB/s) = bundling and uploading ${bundleSeconds.toFixed(1)} s (tar + ` +
        `gzip -6 of incompressible bytes + AES + ${parts} parts of 10 MiB, 4 in flight) + the CLC double unbundling ` +
        `it all with openssl/gunzip/tar until available ${clcSeconds.toFixed(1)} s; generating and hashing it ` +
        `first: ${hashSeconds.toFixed(1)} s; RSS growth ${((peak - baseline) / 1048576).toFixed(0)} MiB; ` +
        `retire (deregister + delete ${parts + 1} objects): ${((Date.now() - retireStart) / 1000).toFixed(1)} s`;
      ctx.annotate(figures);
      console.log(figures);
    },
    30 * 60_000,
  );
});
