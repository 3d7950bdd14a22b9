import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import type { ActionRecord } from '../../core/catalog/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, imagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { glanceCloudYaml } from '../e2e/glance-config.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import {
  addImage,
  corruptStored,
  keptState,
  makeBadImages,
  plantImage,
  storedPath,
  type BadImageFiles,
} from '../support/bad-images.js';

/**
 * Bad images through a full `syncTarget` into the real Glance (Keystone 25000 / Glance 25001):
 * checksum lies (the stored bytes changed after the catalog recorded them) and format lies
 * are refused with a clear reason, and no copy of them stays in Glance — not even a queued
 * record. A good image in the same run still goes through: one bad image fails only itself.
 *
 * Where a checksum lie is caught: a direct push streams the stored bytes and the driver
 * verifies them on the way (sha256 in-stream, so Glance never sees the end of the body and
 * commits nothing; then md5/sha512 as Glance stored them), deleting the record on a mismatch.
 * A push that needs a conversion is verified before qemu-img runs (agent/sync/content.ts),
 * because the converted artifact gets checksums of its own.
 */
const run = randomBytes(3).toString('hex');
const prefix = `bad-${run}-`;

describe('bad images synced into real Glance: refused, nothing left in the cloud', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let session: SyncSession;
  let files: BadImageFiles;

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    skip ??= (await requirePeer('qemu-img')).skip;
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-bad-glance-'));
    files = await makeBadImages(dir);
    const cloud = (name: string, tag: string, diskFormat: string) =>
      glanceCloudYaml(
        name,
        peer!,
        { tag, prefix },
        `      diskFormat: ${diskFormat}\n      retire: { mode: delete }\n      retries: { attempts: 1 }\n`,
      );
    const config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      `dataDir: ${join(dir, 'data')}\nlogging: { level: error }\nagent: { id: bad-input-${run}, leaseSeconds: ` +
        `30 }\nclouds:\n${cloud('glance', `direct-${run}`, 'auto')}${cloud('glance-raw', `convert-${run}`, 'raw')}`,
    );
    session = await openSession({ configFile: config, env: {}, logger: silentLogger });
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    await session?.close();
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  const sync = (target: string) => syncTarget(session.built.targets.get(target)!, session.deps, { trigger: 'cli' });
  const byName = (actions: readonly ActionRecord[]) => new Map(actions.map((a) => [a.name, a]));
  const inGlance = async () => (await imagesNamed(peer!, prefix)).map((i) => `${i.name}:${i.status}`).sort();

  it(
    'direct push: checksum lies (bytes changed, file cut short) ' +
      'and a format lie fail alone; nothing of them stays in Glance',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const tags = [`direct-${run}`];
      const good = await addImage(session.images, 'good', files.raw, { diskFormat: 'raw', tags });
      const rotten = await addImage(session.images, 'rotten', files.raw, { diskFormat: 'raw', tags });
      await corruptStored(rotten);
      const cut = await addImage(session.images, 'cut-short', files.raw, { diskFormat: 'raw', tags });
      await truncate(storedPath(cut), (await stat(storedPath(cut))).size - 1000);
      // Uploads refuse a format lie; one planted in the catalog past them is refused by the agent.
      const liar = await plantImage(session.deps, 'raw-as-qcow2', files.raw, { diskFormat: 'qcow2', tags });
      expect([good, rotten, cut, liar].every((i) => i.status === 'available')).toBe(true);

      const result = await sync('glance');
      expect(result.status).toBe('partial');
      const actions = byName(result.actions);
      expect(actions.get(`${prefix}good`)).toMatchObject({ action: 'create', result: 'created' });
      expect(actions.get(`${prefix}rotten`)).toMatchObject({
        result: 'failed',
        error: {
          kind: 'integrity',
          message: expect.stringMatching(/sha256 is [0-9a-f]{64}, expected [0-9a-f]{64}.*(was deleted|deleted)/),
        },
      });
      expect(actions.get(`${prefix}cut-short`)).toMatchObject({
        result: 'failed',
        error: { kind: 'integrity', message: expect.stringMatching(/size is \d+ bytes, expected \d+/) },
      });
      expect(actions.get(`${prefix}raw-as-qcow2`)).toMatchObject({
        result: 'failed',
        error: { kind: 'unsafe', message: expect.stringMatching(/declared qcow2, but the content is raw/) },
      });
      expect(await inGlance()).toEqual([`${prefix}good:active`]);

      // The next run tries again (the catalog is unchanged) and fails the same way: no leftovers pile up.
      const again = await sync('glance');
      expect(again.actions.map((a) => `${a.name}:${a.result}`).sort()).toEqual([
        `${prefix}cut-short:failed`,
        `${prefix}raw-as-qcow2:failed`,
        `${prefix}rotten:failed`,
      ]);
      expect(await inGlance()).toEqual([`${prefix}good:active`]);
    },
  );

  it(
    'converted push: a checksum lie is refused before qemu-img runs, ' + 'with no artifact kept and nothing in Glance',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const tags = [`convert-${run}`];
      const good = await addImage(session.images, 'good-qcow2', files.qcow2, { diskFormat: 'qcow2', tags });
      const rotten = await addImage(session.images, 'rotten-qcow2', files.qcow2, { diskFormat: 'qcow2', tags });
      await corruptStored(rotten);
      const before = await keptState(session.deps.catalog, join(dir, 'data', 'images'), session.deps.cacheDir);

      const result = await sync('glance-raw');
      expect(result.status).toBe('partial');
      const actions = byName(result.actions);
      expect(actions.get(`${prefix}good-qcow2`)).toMatchObject({ result: 'created', detail: 'converted qcow2 -> raw' });
      expect(actions.get(`${prefix}rotten-qcow2`)).toMatchObject({
        result: 'failed',
        error: {
          kind: 'integrity',
          message: expect.stringMatching(/not what the catalog recorded, refusing to convert it: sha256 is/),
        },
      });
      expect((await inGlance()).filter((n) => n.includes('qcow2'))).toEqual([`${prefix}good-qcow2:active`]);
      // Exactly one artifact more: the good image's raw copy; none for the rotten one.
      const after = await keptState(session.deps.catalog, join(dir, 'data', 'images'), session.deps.cacheDir);
      expect(after.artifacts).toEqual([...before.artifacts, `artifact:${good.checksums.sha256}:raw`].sort());
      expect(after.cache.filter((n) => n.startsWith('convert-'))).toEqual([]);
    },
  );
});
