import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { memorySyncWorld, type MemorySyncWorld } from '../../test/support/memory-sync.js';
import { MemoryCloud, type NativeFields, type NativeImage } from '../../core/iaas/memory/client.js';
import { MemoryDriver } from '../../core/iaas/memory/driver.js';
import type { CreateRequest, IaasDriver } from '../../core/iaas/port.js';
import { newImage } from '../../core/image/image.js';
import { nextStatus } from '../../core/image/lifecycle.js';
import { catalogSnapshot, syncTarget } from './runner.js';
import { ORIGIN_ID, ORIGIN_TARGET } from './desired.js';

/**
 * The runner, planner and executor end to end against the memory cloud: fast (no peer), with
 * the real SQLite catalog and file store. What these tests pin is the agent's side of the port:
 * which calls it makes, with which deadline, and what it records.
 */

let world: MemorySyncWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** An image uploaded behind visor's back, once the cloud has it active. */
async function cloudImage(cloud: MemoryCloud, name: string, bytes: Buffer): Promise<NativeImage> {
  const native = await cloud.create('lab', {
    name,
    disk_format: 'raw',
    container_format: 'bare',
    visibility: 'public',
  });
  await cloud.upload(native.id, Readable.from([bytes]));
  while ((await cloud.get(native.id)).status !== 'active') await new Promise((resolve) => setTimeout(resolve, 2));
  return native;
}

const results = (actions: readonly { action: string; result: string }[]) =>
  actions.map((a) => `${a.action}:${a.result}`).sort();

describe('sync against the memory cloud', () => {
  it('creates marked, verified copies, then finds nothing left to do', async () => {
    world = await memorySyncWorld();
    const a = await world.addImage('alpha', randomBytes(64 * 1024));
    await world.addImage('beta', randomBytes(32 * 1024));
    const target = world.target();
    const first = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(first).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(results(first.actions)).toEqual(['create:created', 'create:created']);
    const copies = await target.driver.list();
    const alpha = copies.find((c) => c.name === 'alpha')!;
    expect(alpha).toMatchObject({
      state: 'active',
      markers: { agent: world.agentId, target: 'lab', imageId: a.id, sha256: a.checksums.sha256 },
    });
    expect(alpha.checksums.sha256).toBe(a.checksums.sha256);
    const again = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(again).toMatchObject({ status: 'succeeded', actions: [], drift: 0 });
  });

  it('syncs an image whose md5/sha512 are still pending: read in place, checked against its sha256', async () => {
    world = await memorySyncWorld();
    const bytes = randomBytes(48 * 1024);
    const full = await world.addImage('pending', bytes);
    // As a server's upload leaves it: the sha256 only, md5 and sha512 to come.
    const image = await world.catalog.images.update(full.id, full.revision, {
      checksums: { sha256: full.checksums.sha256! },
      checksumsPending: ['md5', 'sha512'],
    });
    const files = () => world!.catalog.state.get(`artifact:${full.checksums.sha256}:raw`);
    const target = world.target();
    const run = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(run).toMatchObject({ status: 'succeeded' });
    expect(results(run.actions)).toEqual(['create:created']);
    const copy = (await target.driver.list()).find((c) => c.name === 'pending')!;
    expect(copy.checksums).toMatchObject({ sha256: full.checksums.sha256, md5: full.checksums.md5 });
    // No copy of the bytes was made for it.
    expect(await files()).toBeUndefined();
    expect((await world.catalog.images.find(image.id))?.checksumsPending).toEqual(['md5', 'sha512']);

    // Stored bytes that are not those of its sha256 are never pushed.
    const other = await world.addImage('damaged', randomBytes(4096));
    await world.catalog.images.update(other.id, other.revision, {
      checksums: { sha256: 'f'.repeat(64) },
      checksumsPending: ['md5', 'sha512'],
    });
    const second = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(second.status).not.toBe('succeeded');
    expect((await target.driver.list()).find((c) => c.name === 'damaged')).toBeUndefined();
  });

  it("gives a create what is left of the action's deadline, and the driver honours it", async () => {
    // The cloud never finishes an import: only the deadline ends the create.
    world = await memorySyncWorld({ cloud: { activationMs: 3_600_000 } });
    await world.addImage('stuck', randomBytes(4096));
    const seen: CreateRequest[] = [];
    const driver = new MemoryDriver({ cloud: world.cloud, project: 'lab', pollIntervalMs: 5 });
    const spying = new Proxy(driver, {
      get: (target, key) => {
        if (key === 'create')
          return (request: CreateRequest) => {
            seen.push(request);
            return target.create(request);
          };
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as IaasDriver;
    const started = Date.now();
    const run = await syncTarget(world.target({ timeouts: { action: '1s' } }, { driver: spying }), world.deps(), {
      trigger: 'manual',
    });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.timeoutMs).toBeGreaterThan(0);
    expect(seen[0]!.timeoutMs).toBeLessThanOrEqual(1000);
    expect(run.actions).toEqual([
      expect.objectContaining({
        action: 'create',
        result: 'failed',
        error: { kind: 'timeout', message: expect.stringMatching(/took longer than 1s|not active within/) },
      }),
    ]);
    // The half-made image is gone: the driver cleaned up within the grace the executor gives it.
    expect(await driver.list()).toEqual([]);
  });

  it('cleans up a leftover copy by discarding it, even where the retire policy never deletes', async () => {
    world = await memorySyncWorld();
    const image = await world.addImage('gamma', randomBytes(4096));
    // A copy a crashed run left queued, marked for this target: the planner must clean it up.
    const leftover = await world.cloud.create('lab', {
      name: 'gamma',
      disk_format: 'raw',
      container_format: 'bare',
      properties: {
        visor_agent: world.agentId,
        visor_target: 'lab',
        visor_image_id: image.id,
        visor_sha256: image.checksums.sha256!,
        visor_revision: '1',
      },
    });
    const target = world.target({ retire: { mode: 'hide' } }, { retireModes: ['hide'] });
    const run = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(results(run.actions)).toEqual(['cleanup:cleaned', 'create:created']);
    await expect(world.cloud.get(leftover.id)).rejects.toMatchObject({ kind: 'notFound' });
    expect(run).toMatchObject({ status: 'succeeded', drift: 0 });
  });

  it('discards a new copy whose markers did not stick, whatever the retire policy, and fails the action', async () => {
    // A cloud that silently drops the properties it is given: the copy could never be found again.
    class Forgetful extends MemoryCloud {
      override async create(
        project: string,
        fields: NativeFields & Pick<NativeImage, 'name' | 'disk_format' | 'container_format'>,
      ) {
        return super.create(project, { ...fields, properties: {} });
      }
    }
    world = await memorySyncWorld({ cloud: new Forgetful({}) });
    await world.addImage('delta', randomBytes(4096));
    const target = world.target({ retire: { mode: 'hide' } }, { retireModes: ['hide'] });
    const run = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(run.actions).toEqual([
      expect.objectContaining({
        action: 'create',
        result: 'failed',
        error: expect.objectContaining({ kind: 'invalidResponse' }),
      }),
    ]);
    expect(await target.driver.list()).toEqual([]);
  });

  it("imports the cloud's own image with its bits once, and never again", async () => {
    world = await memorySyncWorld();
    const bytes = randomBytes(48 * 1024);
    const native = await cloudImage(world.cloud, 'theirs', bytes);
    const target = world.target({ import: 'full', selector: { names: ['nothing-to-push'] } });
    const first = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(results(first.actions)).toEqual(['import:imported']);
    const imported = (await catalogSnapshot(world.catalog)).filter((i) => i.properties[ORIGIN_ID] === native.id);
    expect(imported).toHaveLength(1);
    expect(imported[0]).toMatchObject({
      status: 'available',
      size: bytes.length,
      properties: { [ORIGIN_TARGET]: 'lab' },
    });
    const { stream } = await world.store.get(imported[0]!.location!.uri);
    expect((await buffer(stream)).equals(bytes)).toBe(true);
    const again = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(again.actions).toEqual([]);
  });

  it('takes up an import a crash cut off, into the same record, instead of counting it as imported', async () => {
    world = await memorySyncWorld();
    const bytes = randomBytes(16 * 1024);
    const native = await cloudImage(world.cloud, 'cut-off', bytes);
    // What a crash after the import's first write leaves: the record, `uploading`, without bits.
    const record = newImage({
      name: 'cut-off',
      architecture: 'x86_64',
      properties: { [ORIGIN_TARGET]: 'lab', [ORIGIN_ID]: native.id },
    });
    await world.catalog.images.create({ ...record, status: nextStatus('locked', 'begin') });
    const target = world.target({ import: 'full', selector: { names: ['nothing-to-push'] } });
    const run = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(results(run.actions)).toEqual(['import:imported']);
    const imported = (await catalogSnapshot(world.catalog)).filter((i) => i.properties[ORIGIN_ID] === native.id);
    expect(imported.map((i) => [i.id, i.status, i.size])).toEqual([[record.id, 'available', bytes.length]]);
  });
});
