import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { memorySyncWorld, type MemorySyncWorld } from '../../test/support/memory-sync.js';
import { syncPolicySchema } from '../../core/config/sync-policy.js';
import { isVisorError } from '../../core/errors.js';
import { newImage } from '../../core/image/image.js';
import type { CloudImage, DriverCapabilities } from '../../core/iaas/port.js';
import { checkPolicy, planTarget, syncTarget } from './runner.js';
import { planSharing, shareKey, type ShareRecord } from './share-plan.js';
import { sharingSummary } from './share-run.js';

/**
 * The sharing step end to end against the memory cloud (Glance-like image members with
 * acceptance) and the real SQLite catalog: members added, accepted where the driver may,
 * removed when the catalog stops wanting them, hand-made members left, records kept, and a
 * second sync that has nothing to do.
 */

let world: MemorySyncWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

const selectShared = { selector: { access: ['public', 'shared'] } };
const mapping = { members: { 'vo.alpha': 'proj-alpha', 'vo.beta': ['proj-beta'] } };
const results = (actions: readonly { action: string; result: string }[]) =>
  actions.map((a) => `${a.action}:${a.result}`).sort();

async function setUp(acceptFor: string[] = ['proj-alpha']) {
  world = await memorySyncWorld();
  for (const p of ['proj-alpha', 'proj-beta', 'proj-hand']) world.cloud.addProject(p);
  const target = world.target({ ...selectShared, sharing: mapping }, { acceptFor });
  return { world, target };
}

const visible = async (w: MemorySyncWorld, project: string, nativeId: string) =>
  (await w.cloud.visibleTo(project)).some((i) => i.id === nativeId);

describe('sharing, kept in step by the agent', () => {
  it('shares a shared image with its mapped members, accepts where it may, and a second sync is a no-op', async () => {
    const { world: w, target } = await setUp();
    const image = await w.addImage('vo-image', randomBytes(8192), {
      access: 'shared',
      members: ['vo.alpha', 'vo.beta'],
    });
    const first = await syncTarget(target, w.deps(), { trigger: 'manual' });
    expect(first).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(results(first.actions)).toEqual(['create:created', 'share:updated']);
    const copy = (await target.driver.list()).find((c) => c.markers?.imageId === image.id)!;
    expect(copy.access).toBe('shared');
    const members = await target.driver.members!(copy.nativeId);
    expect(members).toEqual(
      expect.arrayContaining([
        { principal: 'proj-alpha', status: 'accepted' },
        { principal: 'proj-beta', status: 'pending' },
      ]),
    );
    expect(await visible(w, 'proj-alpha', copy.nativeId)).toBe(true);
    expect(await visible(w, 'proj-beta', copy.nativeId)).toBe(false);
    const record = await w.catalog.state.get<ShareRecord>(shareKey('lab', copy.nativeId));
    expect(record).toMatchObject({ imageId: image.id, managed: ['proj-alpha', 'proj-beta'], unmapped: [] });
    // The pending member is reported, not acted on again and again.
    const plan = await planTarget(target, w.deps());
    expect(plan.sharing).toEqual([]);
    expect(plan.notes.map((n) => n.message)).toContain('pending acceptance by proj-beta');
    const again = await syncTarget(target, w.deps(), { trigger: 'manual' });
    expect(again).toMatchObject({ status: 'succeeded', actions: [], drift: 0 });
    // What `visor status` shows of it.
    expect(await sharingSummary(w.catalog, 'lab')).toEqual({
      shared: 1,
      pending: ['proj-beta (vo-image)'],
      unmapped: [],
    });
  });

  it('removes a member the catalog no longer wants, and leaves a member added by hand', async () => {
    const { world: w, target } = await setUp();
    const image = await w.addImage('vo-image', randomBytes(4096), {
      access: 'shared',
      members: ['vo.alpha', 'vo.beta'],
    });
    await syncTarget(target, w.deps(), { trigger: 'manual' });
    const copy = (await target.driver.list()).find((c) => c.markers?.imageId === image.id)!;
    await w.cloud.addMember(copy.nativeId, 'proj-hand');
    await w.cloud.setMemberStatus(copy.nativeId, 'proj-hand', 'accepted');
    const next = await w.catalog.images.update(image.id, image.revision, { members: ['vo.beta'] });
    const run = await syncTarget(target, w.deps(), { trigger: 'manual' });
    expect(run).toMatchObject({ status: 'succeeded', drift: 0 });
    const share = run.actions.find((a) => a.action === 'share');
    expect(share).toMatchObject({ result: 'updated', detail: expect.stringContaining('stop sharing with proj-alpha') });
    const principals = (await target.driver.members!(copy.nativeId)).map((m) => m.principal).sort();
    expect(principals).toEqual(['proj-beta', 'proj-hand']);
    expect(await visible(w, 'proj-alpha', copy.nativeId)).toBe(false);
    expect(await visible(w, 'proj-hand', copy.nativeId)).toBe(true);
    const record = await w.catalog.state.get<ShareRecord>(shareKey('lab', copy.nativeId));
    expect(record?.managed).toEqual(['proj-beta']);
    // Private in the catalog: the copy turns private, visor's members go, the hand-made one stays.
    await w.catalog.images.update(next.id, next.revision, { access: 'private', members: [] });
    const privateRun = await syncTarget(
      world!.target(
        { selector: { access: ['public', 'shared', 'private'] }, sharing: mapping },
        { acceptFor: ['proj-alpha'] },
      ),
      w.deps(),
      { trigger: 'manual' },
    );
    expect(privateRun).toMatchObject({ status: 'succeeded', drift: 0 });
    const after = await target.driver.get(copy.nativeId);
    expect(after.access).toBe('private');
    // Private: no member in effect (as in Glance), and nobody else sees it.
    expect(await target.driver.members!(copy.nativeId)).toEqual([]);
    expect(await visible(w, 'proj-beta', copy.nativeId)).toBe(false);
    expect(await visible(w, 'proj-hand', copy.nativeId)).toBe(false);
    // visor's member stays in its records while dormant: shared again without it, it is removed.
    expect((await w.catalog.state.get<ShareRecord>(shareKey('lab', copy.nativeId)))?.managed).toEqual(['proj-beta']);
    const back = await w.catalog.images.get(image.id);
    await w.catalog.images.update(image.id, back!.revision, { access: 'shared', members: ['vo.alpha'] });
    const shared = await syncTarget(target, w.deps(), { trigger: 'manual' });
    expect(shared).toMatchObject({ status: 'succeeded', drift: 0 });
    const principals2 = (await target.driver.members!(copy.nativeId)).map((m) => m.principal).sort();
    expect(principals2).toEqual(['proj-alpha', 'proj-hand']);
    expect(await visible(w, 'proj-hand', copy.nativeId)).toBe(true);
  });

  it('never shares a private catalog image, whatever shareWith says', async () => {
    const { world: w } = await setUp();
    const policy = { selector: { access: ['private'] }, sharing: { shareWith: ['proj-alpha'] } };
    const target = w.target(policy, { acceptFor: ['proj-alpha'] });
    const image = await w.addImage('secret', randomBytes(2048), { access: 'private' });
    const run = await syncTarget(target, w.deps(), { trigger: 'manual' });
    expect(results(run.actions)).toEqual(['create:created']);
    const copy = (await target.driver.list()).find((c) => c.markers?.imageId === image.id)!;
    expect(copy.access).toBe('private');
    expect(await target.driver.members!(copy.nativeId)).toEqual([]);
    expect(await visible(w, 'proj-alpha', copy.nativeId)).toBe(false);
  });

  it('applies shareWith to every shared image and reports members with no mapping', async () => {
    const { world: w } = await setUp();
    const target = w.target({ ...selectShared, sharing: { shareWith: ['proj-beta'] } });
    const image = await w.addImage('vo-image', randomBytes(2048), { access: 'shared', members: ['vo.unknown'] });
    const plan = await planTarget(target, w.deps());
    expect(plan.notes).toEqual([]);
    const run = await syncTarget(target, w.deps(), { trigger: 'manual' });
    expect(run).toMatchObject({ status: 'succeeded', drift: 0 });
    const copy = (await target.driver.list()).find((c) => c.markers?.imageId === image.id)!;
    expect((await target.driver.members!(copy.nativeId)).map((m) => m.principal)).toEqual(['proj-beta']);
    const after = await planTarget(target, w.deps());
    expect(after.notes.map((n) => n.message)).toEqual(
      expect.arrayContaining(['not shared with vo.unknown: no principal for them in sync.sharing.members']),
    );
    const record = await w.catalog.state.get<ShareRecord>(shareKey('lab', copy.nativeId));
    expect(record?.unmapped).toEqual(['vo.unknown']);
  });

  it('refuses a sharing config on a cloud that cannot share, instead of widening anything', () => {
    const capabilities: DriverCapabilities = {
      diskFormats: ['raw'],
      containerFormats: ['bare'],
      retireModes: ['delete'],
      access: ['public', 'private'],
      reportsChecksums: [],
      reportsSize: false,
      importFromUrl: false,
      requiresUrl: false,
      properties: false,
      tags: false,
      download: false,
      detectsInUse: false,
    };
    const driver = { adapter: 'plain', capabilities } as never;
    const policy = syncPolicySchema.parse({ retire: { mode: 'delete' }, sharing: { shareWith: ['x'] } });
    let error: unknown;
    try {
      checkPolicy({ name: 'plain', adapter: 'plain', policy, driver });
    } catch (caught) {
      error = caught;
    }
    expect(isVisorError(error, 'config')).toBe(true);
    expect((error as Error).message).toMatch(/cannot share images.*never made public/);
    // Without the setting, a shared catalog image is noted and its copy kept private.
    const image = {
      ...newImage({ name: 'x', architecture: 'x86_64', access: 'shared', members: ['vo.a'] }),
      status: 'available' as const,
    };
    const copy: CloudImage = {
      nativeId: 'n1',
      name: 'x',
      state: 'active',
      hidden: false,
      inUse: false,
      access: 'private',
      checksums: {},
      metadata: {},
      markers: { agent: 'a', target: 't', imageId: image.id, sha256: 'x', revision: 1 },
    };
    const open = syncPolicySchema.parse({ selector: { access: ['shared'] }, sharing: { members: {} } });
    const mapped = { ...open, sharing: { members: { 'vo.a': 'p' }, shareWith: [] } };
    const planned = planSharing({
      target: 't',
      agentId: 'a',
      policy: mapped,
      capabilities,
      catalog: [image],
      observed: [copy],
      members: new Map(),
      records: new Map(),
    });
    expect(planned.actions).toEqual([]);
    expect(planned.notes[0]?.message).toMatch(
      /cannot share with p: this cloud cannot share images; the copy stays private/,
    );
  });
});
