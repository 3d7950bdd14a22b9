import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, type SyncSession } from '../../agent/session.js';
import { migrate } from '../../agent/sync/migrate.js';
import { newImage } from '../../core/image/image.js';
import type { ImageDraft } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import { bufferContent } from '../support/content.js';

/**
 * The migration orchestration (agent/sync/migrate.ts) between two OpenNebula clouds (the
 * double, local mode: the agent reads and stages datastore files): every chosen image is
 * pulled and pushed, images pulled before are found on any catalog page, and the source
 * listing runs under the sync's timeout and retries.
 */
describe('migrate between two clouds', () => {
  let dir: string;
  let source: OpenNebulaDouble;
  let destination: OpenNebulaDouble;
  let session: SyncSession;
  const payloads = new Map<string, Buffer>();
  const count = 5;

  const localCloud = (double: OpenNebulaDouble, staging: string) =>
    `{ endpoint: '${double.endpoint}', username: oneadmin, password: opennebula, datastore: default, ` +
    `mode: local, stagingDir: '${staging}', pollInterval: 0.05, timeouts: { request: 5, readyWait: 20 } }`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-migrate-paging-'));
    const stagings = [join(dir, 'staging-src'), join(dir, 'staging-dst')];
    for (const staging of stagings) await mkdir(staging);
    const datastore = (staging: string) => [
      { id: 1, name: 'default', type: 0, template: { SAFE_DIRS: staging, RESTRICTED_DIRS: '/', TYPE: 'IMAGE_DS' } },
    ];
    source = await startOpenNebulaDouble({ datastores: datastore(stagings[0]!) });
    destination = await startOpenNebulaDouble({ datastores: datastore(stagings[1]!) });
    const config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: migrate-paging }
clouds:
  src:
    adapter: opennebula
    options: ${localCloud(source, stagings[0]!)}
    sync: { timeouts: { list: 1s }, retries: { attempts: 2, backoff: 100ms } }
  dst:
    adapter: opennebula
    options: ${localCloud(destination, stagings[1]!)}
    sync: { retire: { mode: delete } }
`,
    );
    session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    // Images of the source cloud, made there by another tool (their markers name someone else).
    const driver = session.built.targets.get('src')!.driver;
    for (let i = 0; i < count; i++) {
      const bytes = randomBytes(4096 + i);
      const content = bufferContent(bytes);
      const image = newImage({
        name: `paged-${i}`,
        architecture: 'x86_64',
        diskFormat: 'raw',
        containerFormat: 'bare',
      } as ImageDraft);
      const markers = {
        agent: 'elsewhere',
        target: 'other',
        imageId: image.id,
        sha256: content.checksums.sha256,
        revision: 1,
      };
      const created = await driver.create({ image, markers, content, timeoutMs: 60_000 });
      payloads.set(`paged-${i}`, bytes);
      expect(created.state).toBe('active');
    }
  }, 120_000);
  afterAll(async () => {
    await session?.close();
    await expectValidDocuments([source, destination]);
    await source?.close();
    await destination?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const targets = () => [session.built.targets.get('src')!, session.built.targets.get('dst')!] as const;

  it('pulls and pushes every chosen image; a second migration finds them all on later catalog pages', async () => {
    const [src, dst] = targets();
    const first = await migrate(src, dst, session.deps, { names: ['paged-*'], pageSize: 2 });
    expect(first.status).toBe('succeeded');
    expect(first.pulled.map((r) => r.result)).toEqual(Array(count).fill('imported'));
    expect(first.imageIds.size).toBe(count);
    expect(first.run.actions.filter((a) => a.result === 'created')).toHaveLength(count);
    const copies = destination.images().filter((i) => i.name.startsWith('paged-'));
    expect(copies.map((i) => i.name).sort()).toEqual([...payloads.keys()].sort());
    for (const copy of copies) {
      const imageId = copy.template.get('VISOR_IMAGE_ID')!;
      expect([...first.imageIds]).toContain(imageId);
      const stored = await session.deps.catalog.images.get(imageId);
      const sha256 = createHash('sha256').update(payloads.get(copy.name)!).digest('hex');
      expect(stored.checksums.sha256).toBe(sha256);
    }

    // Pages of 2 over 5 earlier pulls: each of them is found, none is pulled again.
    const again = await migrate(src, dst, session.deps, { names: ['paged-*'], pageSize: 2 });
    expect(again.pulled).toEqual([]);
    expect([...again.imageIds].sort()).toEqual([...first.imageIds].sort());
    expect(again.run.actions).toEqual([]);
    expect(again.status).toBe('succeeded');
    const catalogCopies = await session.deps.catalog.images.list({
      filters: { 'properties.visor_origin_target': 'src' },
    });
    expect(catalogCopies.items).toHaveLength(count);
  }, 120_000);

  it('lists the source cloud under the sync timeout and retries: a cloud that does not answer fails it', async () => {
    const [src, dst] = targets();
    // Slower than the 1 s list timeout: without it, the listing would succeed after 5 s.
    source.stall('one.imagepool.info', 5000);
    const listings = () => source.calls.filter((c) => c.method === 'one.imagepool.info').length;
    const before = listings();
    try {
      const error = await migrate(src, dst, session.deps, { names: ['paged-*'] }).catch((e: unknown) => e);
      expect(error).toMatchObject({ kind: 'timeout', attempts: 2 });
      expect(listings() - before).toBe(2);
    } finally {
      source.stall('one.imagepool.info', 0);
    }
  }, 60_000);

  it('refuses to migrate a cloud into itself, and says when nothing matches', async () => {
    const [src] = targets();
    await expect(migrate(src, src, session.deps)).rejects.toMatchObject({ kind: 'invalidInput' });
    await expect(migrate(src, targets()[1], session.deps, { names: ['no-such-*'] })).rejects.toMatchObject({
      kind: 'notFound',
      message: 'no active image in src matches',
    });
  });
});
