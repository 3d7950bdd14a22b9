import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import type { Image } from '../../core/image/model.js';
import { prng, seedFrom } from '../support/prng.js';
import { startVisorProcess, type VisorProcess } from '../support/visor-process.js';

/**
 * kill -9 of `visor serve` (the built CLI) at seeded random moments while images are uploaded and
 * their md5/sha512 are computed off the request path. After every kill, read straight from the
 * catalog on disk: no image is `available` with a digest that is not its stored bytes', and every
 * digest it lacks is listed as pending. After a restart, every pending digest is computed (the work
 * lives in the catalog, not in the process). Stored bytes damaged while the server was down are
 * found when the digests are computed: the image goes to `error`, never `available` with digests
 * of other bytes.
 *
 * VISOR_CRASH_SEED replays the choices; VISOR_CHECKSUM_CRASH_POINTS (default 6) sets how many kills.
 */
const seed = seedFrom('VISOR_CRASH_SEED', 20261207);
const points = Number(process.env['VISOR_CHECKSUM_CRASH_POINTS'] ?? 6);
const MiB = 1024 * 1024;

const hex = (algorithm: string, bytes: Buffer) => createHash(algorithm).update(bytes).digest('hex');

interface Check {
  available: number;
  pending: number;
  problems: string[];
}

/** Every available image's digests against its stored bytes, read from the catalog file itself. */
async function checkCatalog(dataDir: string, except?: string): Promise<Check> {
  const catalog = new SqliteCatalog({ path: join(dataDir, 'catalog.db') });
  await catalog.init();
  const problems: string[] = [];
  let available = 0;
  let pending = 0;
  try {
    const images: Image[] = (await catalog.images.list({ limit: 1000 })).items;
    for (const image of images) {
      if (image.status !== 'available' || image.id === except) continue;
      available++;
      if (image.checksumsPending?.length) pending++;
      const bytes = await readFile(fileURLToPath(image.location!.uri));
      const what = `${image.name} (${image.id})`;
      if (image.size !== bytes.length) problems.push(`${what}: size ${image.size}, stored ${bytes.length}`);
      if (!image.checksums.sha256) problems.push(`${what}: available without a sha256`);
      for (const algorithm of ['md5', 'sha256', 'sha512'] as const) {
        const value = image.checksums[algorithm];
        if (value === undefined) {
          if (!image.checksumsPending?.includes(algorithm as 'md5'))
            problems.push(`${what}: no ${algorithm}, none pending`);
        } else if (value !== hex(algorithm, bytes)) problems.push(`${what}: wrong ${algorithm}`);
      }
    }
  } finally {
    await catalog.close();
  }
  return { available, pending, problems };
}

describe('crash: kill -9 of visor serve while digests are computed off the request path', { timeout: 600_000 }, () => {
  let dir: string;
  let config: string;
  let server: VisorProcess | undefined;
  const random = prng(seed);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-checksum-crash-'));
    config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      [
        `dataDir: ${join(dir, 'data')}`,
        'logging: { level: error }',
        'stores:',
        '  local: { type: file }',
        'defaultStore: local',
        'server:',
        '  host: 127.0.0.1',
        '  auth: { enabled: false }',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await server?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  const client = (url: string) => new VisorClient({ url, source: 'test' });
  const upload = (url: string, name: string, bytes: Buffer) =>
    client(url).add(
      { name, architecture: 'x86_64', format: 'raw' },
      { stream: Readable.from([bytes]), size: bytes.length },
    );

  it(`${points} kills leave no available image with a wrong or missing digest (seed ${seed})`, async () => {
    const data = join(dir, 'data');
    const log: string[] = [];
    let finished = 0;
    for (let n = 0; n < points; n++) {
      server = await startVisorProcess('serve', config);
      const url = server.url;
      // A few uploads at once, of 4-40 MiB; the kill lands during one, during the digests, or after.
      const uploads = Array.from({ length: 3 }, (_, i) => {
        const bytes = Buffer.alloc(random.int(4, 40) * MiB);
        for (let at = 0; at < bytes.length; at += 4096) bytes.writeUInt32LE(random.int(0, 2 ** 32 - 1), at);
        return upload(url, `crash-${n}-${i}`, bytes).then(
          () => 'done',
          () => 'cut',
        );
      });
      // Every other kill lands the moment an upload has answered, when its md5/sha512 are still
      // being computed: on a fast machine a random moment alone can miss that window in every run.
      const ms = random.int(0, 1500);
      const started = Date.now();
      if (n % 2 === 0) await sleep(ms);
      else
        await Promise.race([
          Promise.any(uploads.map((u) => u.then((o) => o === 'done' || Promise.reject()))),
          sleep(10_000),
        ]).catch(() => undefined);
      const when = n % 2 === 0 ? `at ${ms} ms` : `after the first answer (${Date.now() - started} ms)`;
      await server.kill();
      const outcomes = await Promise.all(uploads);
      finished += outcomes.filter((o) => o === 'done').length;
      const after = await checkCatalog(data);
      log.push(
        `kill ${n} ${when}: uploads ${outcomes.join('/')}; ${after.available} available, ${after.pending} pending`,
      );
      expect(after.problems, log.join('\n')).toEqual([]);
    }
    expect(finished, log.join('\n')).toBeGreaterThan(0);
    // Kills after the upload and before its digests were recorded are the point of this suite.
    expect(
      log.some((line) => !line.endsWith(' 0 pending')),
      log.join('\n'),
    ).toBe(true);
    console.info(`checksum crash (seed ${seed}):\n${log.join('\n')}`);

    // Damage the stored bytes of an image whose digests are still pending (or make one pending
    // again): the next start must find it, not vouch for it.
    const catalog = new SqliteCatalog({ path: join(data, 'catalog.db') });
    await catalog.init();
    let damaged: Image | undefined;
    try {
      const images = (await catalog.images.list({ limit: 1000 })).items.filter((i) => i.status === 'available');
      const victim = images.find((i) => i.checksumsPending?.length) ?? images[0]!;
      damaged = victim.checksumsPending?.length
        ? victim
        : await catalog.images.update(victim.id, victim.revision, {
            checksums: { sha256: victim.checksums.sha256! },
            checksumsPending: ['md5', 'sha512'],
          });
      const file = await open(fileURLToPath(damaged.location!.uri), 'r+');
      await file.write(Buffer.from('not the bytes uploaded'), 0, 22, 1000);
      await file.close();
    } finally {
      await catalog.close();
    }

    // Restart: the pending digests are computed; the damaged image is taken out of reach.
    server = await startVisorProcess('serve', config);
    const deadline = Date.now() + 120_000;
    // The damaged image is left out of the checks until the server has read it back.
    let check = await checkCatalog(data, damaged.id);
    const damagedPending = async () => {
      const c = new SqliteCatalog({ path: join(data, 'catalog.db') });
      await c.init();
      try {
        return (await c.images.find(damaged!.id))?.checksumsPending !== undefined;
      } finally {
        await c.close();
      }
    };
    while ((check.pending > 0 || (await damagedPending())) && Date.now() < deadline) {
      await sleep(250);
      check = await checkCatalog(data, damaged.id);
    }
    await server.stop();
    expect(check.problems, log.join('\n')).toEqual([]);
    expect(check.pending, 'digests still pending two minutes after the restart').toBe(0);
    const final = new SqliteCatalog({ path: join(data, 'catalog.db') });
    await final.init();
    try {
      const after = await final.images.find(damaged.id);
      expect(after).toMatchObject({ status: 'error' });
      expect(after?.checksumsPending).toBeUndefined();
      const good = (await final.images.list({ limit: 1000 })).items.filter((i) => i.status === 'available');
      expect(good.length).toBeGreaterThan(0);
      for (const image of good) expect(Object.keys(image.checksums).sort()).toEqual(['md5', 'sha256', 'sha512']);
    } finally {
      await final.close();
    }
  });
});
