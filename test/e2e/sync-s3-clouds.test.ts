import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../../agent/service/access.js';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import type { RunRecord } from '../../core/catalog/port.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';
import {
  accountId,
  expectValidBodies,
  region,
  startWorld,
  type EucalyptusWorld,
} from '../adapters/eucalyptus/harness.js';
import { setUpCumulusRepository, type CumulusRepository } from '../adapters/nimbus/harness.js';
import type { Ec2Double } from '../doubles/ec2/index.js';
import { requirePeer } from '../peers/index.js';

/**
 * The agent's sync end to end into the two clouds that keep images in S3: Nimbus (its Cumulus
 * repository laid out in the real Swift s3api peer) and Eucalyptus (bundles in the real S3 peer
 * as Walrus, registered with the schema-validated EC2 double).
 */
const agent: Caller = { name: 'e2e', admin: true };

interface Cloud {
  adapter: string;
  options: Record<string, unknown>;
  /** Objects/images the cloud holds that are not visor's, to check they are left alone. */
  untouched(): Promise<string[]>;
  close(): Promise<void>;
}

function scenario(name: string, setUp: () => Promise<Cloud | { skip: string }>) {
  describe(`sync into ${name}, end to end`, () => {
    let cloud: Cloud | undefined;
    let skip: string | undefined;
    let dir: string;
    let session: SyncSession;
    let before: string[];

    beforeAll(async () => {
      const result = await setUp();
      if ('skip' in result) {
        skip = result.skip;
        return;
      }
      cloud = result;
      dir = await mkdtemp(join(tmpdir(), `visor-e2e-${name}-`));
      const config = join(dir, 'visor.yaml');
      await writeFile(
        config,
        stringify({
          dataDir: join(dir, 'data'),
          logging: { level: 'error' },
          agent: { id: `e2e-${name}` },
          clouds: {
            target: {
              adapter: cloud.adapter,
              options: cloud.options,
              sync: {
                selector: { tags: ['e2e'], access: ['public', 'private'] },
                naming: 'vm-{name}',
                retire: { mode: 'delete' },
                diskFormat: 'raw',
                retries: { attempts: 2, backoff: '1s' },
              },
            },
          },
        }),
      );
      session = await openSession({ configFile: config, env: {}, logger: silentLogger });
      before = await cloud.untouched();
    }, 300_000);
    afterAll(async () => {
      await session?.close();
      await cloud?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const sync = (): Promise<RunRecord> =>
      syncTarget(session.built.targets.get('target')!, session.deps, { trigger: 'cli' });
    const add = async (imageName: string, size = 512 * 1024, extra: Record<string, unknown> = {}): Promise<Image> => {
      const image = await session.images.register(agent, {
        name: imageName,
        architecture: 'x86_64',
        diskFormat: 'raw',
        tags: ['e2e'],
        access: 'public',
        ...extra,
      });
      return session.images.upload(agent, image.id, Readable.from([randomBytes(size)]), { size });
    };
    const results = (run: RunRecord) => run.actions.map((a) => `${a.action}:${a.result}`).sort();
    const bytes = (run: RunRecord) => run.actions.reduce((n, a) => n + (a.result === 'failed' ? 0 : (a.bytes ?? 0)), 0);
    const listed = async () =>
      (await session.built.targets.get('target')!.driver.list()).filter((i) => i.markers?.agent === `e2e-${name}`);

    let first: Image;
    let second: Image;

    it('creates, then does nothing (0 bytes) on the next run', async (ctx) => {
      if (skip) ctx.skip(skip);
      first = await add('first');
      second = await add('second', 300 * 1024);
      const run = await sync();
      expect(run.status, JSON.stringify(run.actions)).toBe('succeeded');
      expect(results(run)).toEqual(['create:created', 'create:created']);
      expect(run.drift).toBe(0);
      const copies = await listed();
      expect(copies.map((c) => c.markers!.imageId).sort()).toEqual([first.id, second.id].sort());
      const again = await sync();
      expect(again.actions).toEqual([]);
      expect(bytes(again)).toBe(0);
    });

    it('updates metadata without moving bytes', async (ctx) => {
      if (skip) ctx.skip(skip);
      first = await session.images.update(agent, first.id, { name: 'first-renamed' });
      const run = await sync();
      expect(results(run)).toEqual(['update:updated']);
      expect(bytes(run)).toBe(0);
      expect((await listed()).find((c) => c.markers!.imageId === first.id)).toMatchObject({
        name: 'vm-first-renamed',
        markers: { revision: first.revision },
      });
      expect((await sync()).actions).toEqual([]);
    });

    it('replaces on a content change and retires what left the selector', async (ctx) => {
      if (skip) ctx.skip(skip);
      second = await session.images.upload(agent, second.id, Readable.from([randomBytes(200 * 1024)]), {
        size: 200 * 1024,
      });
      first = await session.images.update(agent, first.id, { tags: [] });
      const run = await sync();
      expect(run.status, JSON.stringify(run.actions)).toBe('succeeded');
      // The replaced copy is retired (or, where names are keys, was replaced in place), and the
      // image that left the selector is deleted.
      expect(results(run).filter((r) => r !== 'retire:retired')).toEqual(['replace:replaced']);
      expect(run.actions.filter((a) => a.result === 'retired' && a.imageId === first.id)).toHaveLength(1);
      const copies = await listed();
      expect(copies).toHaveLength(1);
      expect(copies[0]).toMatchObject({ markers: { imageId: second.id, sha256: second.checksums.sha256 } });
      expect((await sync()).actions).toEqual([]);
    });

    it('never touched what is not its own', async (ctx) => {
      if (skip) ctx.skip(skip);
      expect(await cloud!.untouched()).toEqual(before);
    });
  });
}

scenario('nimbus', async () => {
  const { peer, skip } = await requirePeer('s3');
  if (!peer) return { skip };
  const repo: CumulusRepository = await setUpCumulusRepository(peer, 'e2e');
  await repo.putUnmarked('own', 'uploaded-by-hand', "someone else's image");
  const foreign = async () =>
    (await repo.keys()).filter((k) => repo.seeded.includes(k) || k.endsWith('/uploaded-by-hand')).sort();
  return { adapter: 'nimbus', options: repo.options, untouched: foreign, close: () => repo.cleanup() };
});

scenario('eucalyptus', async () => {
  const world = await startWorld('e2e-euca');
  if ('skip' in world) return world;
  const w: EucalyptusWorld = world;
  // One set of keys for both services, as on a real Eucalyptus: the S3 peer's.
  const double: Ec2Double = await w.double({ credentials: { [w.peer.accessKeyId]: w.peer.secretAccessKey } });
  const unmarked = double.addImage({ name: 'hand-made', location: `${w.bucket}/hand-made.manifest.xml` });
  return {
    adapter: 'eucalyptus',
    options: {
      ec2Endpoint: double.endpoint,
      s3Endpoint: w.peer.endpoint,
      region,
      s3Region: w.peer.region,
      accessKeyId: w.peer.accessKeyId,
      secretAccessKey: w.peer.secretAccessKey,
      accountId,
      bucket: w.bucket,
      prefix: 'bundles/',
      acl: 'none',
      createBucket: false,
      userCertificate: w.certs.userCertificate,
      userPrivateKey: w.certs.userPrivateKey,
      cloudCertificate: w.certs.cloudCertificate,
      partSize: 256 * 1024,
      gzipLevel: 1,
      pollInterval: 0.05,
      maxAttempts: 1,
    },
    untouched: async () => [JSON.stringify(double.image(unmarked.id) ?? null)],
    close: async () => {
      await expectValidBodies([double]);
      await w.close();
    },
  };
});
