import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDaemon } from '../../agent/daemon.js';
import { silentLogger } from '../../core/logging/logger.js';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import { requirePeer } from '../peers/index.js';
import { addImage, corruptStored, makeBadImages, plantImage, type BadImageFiles } from '../support/bad-images.js';

/**
 * Bad images synced by `visor agent` into OpenNebula (the XSD-checked double: no real oned can
 * run here). OpenNebula fetches the bytes itself from the agent's one-time URL, so a checksum
 * lie is caught on the cloud's side: the driver gives oned the catalog's MD5, oned's datastore
 * copy checks it and ends in ERROR, and the driver deletes that image. Unsafe content never
 * gets as far as one.image.allocate.
 */
describe('bad images synced into OpenNebula: refused, nothing left in the cloud', () => {
  let skip: string | undefined;
  let one: OpenNebulaDouble;
  let dir: string;
  let daemon: AgentDaemon;
  let files: BadImageFiles;

  beforeAll(async () => {
    skip = (await requirePeer('qemu-img')).skip;
    if (skip) return;
    one = await startOpenNebulaDouble();
    dir = await mkdtemp(join(tmpdir(), 'visor-bad-one-'));
    files = await makeBadImages(dir);
    const config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: bad-input-one, leaseSeconds: 10 }
clouds:
  one:
    adapter: opennebula
    options:
      endpoint: ${one.endpoint}
      username: oneadmin
      password: opennebula
      datastore: default
      pollInterval: 0.05
      timeouts: { request: 5 }
    sync:
      schedule: '0 0 1 1 *'
      selector: { access: [public, private] }
      naming: '{name}'
      retire: { mode: delete }
      retries: { attempts: 1 }
      timeouts: { action: 30s }
`,
    );
    daemon = new AgentDaemon({ configFile: config, env: {}, logger: silentLogger, port: 0 });
    await daemon.start();
  }, 600_000);
  afterAll(async () => {
    if (skip) return;
    await daemon?.stop(5_000);
    if (one) await expectValidDocuments([one]);
    await one?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(
    'a checksum lie ends in ERROR in oned and is deleted; ' +
      'a format lie and a backing file never reach it; a good image goes through',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const images = daemon.server.service;
      await addImage(images, 'one-good', files.raw, { diskFormat: 'raw' });
      const rotten = await addImage(images, 'one-rotten', files.raw, { diskFormat: 'raw' });
      // Once its deferred digests are recorded (they would otherwise find the damage first and take
      // the image out of reach): what is tested here is that oned's own MD5 check catches the lie.
      for (let i = 0; i < 400; i++) {
        const now = await daemon.server.catalog.images.get(rotten.id);
        if (now.checksumsPending === undefined) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      expect((await daemon.server.catalog.images.get(rotten.id)).checksumsPending).toBeUndefined();
      await corruptStored(rotten);
      // Uploads refuse these two; planted in the catalog past them, the agent refuses them too.
      const planted = { catalog: daemon.server.catalog, stores: daemon.server.stores, defaultStore: 'local' };
      await plantImage(planted, 'one-qcow2-as-raw', files.qcow2, { diskFormat: 'raw' });
      await plantImage(planted, 'one-backing', files.backing, { diskFormat: 'qcow2' });

      const result = await daemon.trigger('one');
      expect(result.status).toBe('partial');
      const actions = new Map(result.actions.map((a) => [a.name, a]));
      expect(actions.get('one-good')).toMatchObject({ result: 'created' });
      expect(actions.get('one-rotten')).toMatchObject({
        result: 'failed',
        error: { message: expect.stringMatching(/MD5/i) },
      });
      expect(actions.get('one-qcow2-as-raw')).toMatchObject({
        result: 'failed',
        error: { kind: 'unsafe', message: expect.stringMatching(/declared raw, but the content is qcow2/) },
      });
      expect(actions.get('one-backing')).toMatchObject({
        result: 'failed',
        error: { kind: 'unsafe', message: expect.stringMatching(/backing file: "\/etc\/passwd"/) },
      });

      expect(one.images().map((i) => i.name)).toEqual(['one-good']);
      const allocated = one.calls.filter((c) => c.method === 'one.image.allocate').map((c) => String(c.params[0]));
      // Only the good and the rotten image were ever offered to oned (the rotten one's bytes look fine until counted).
      expect(allocated).toHaveLength(2);
      expect(allocated.some((t) => t.includes('one-qcow2-as-raw') || t.includes('one-backing'))).toBe(false);
    },
  );
});
