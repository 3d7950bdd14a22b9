import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../../agent/service/access.js';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, glanceApi, imagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { glanceCloudYaml } from './glance-config.js';

/**
 * The image life cycle in real Glance (Keystone + Glance on loopback): a deprecated image's copy
 * shows its state and its replacement's Glance id as properties; obsolete is `os_hidden`;
 * deleted is removed; a protected image is `protected` in Glance and never removed; a family
 * rolls forward with keep: 2 over 4 versions, its latest name always on a usable image.
 */
const run = randomBytes(3).toString('hex');
const prefix = `lc-${run}-`;
const tag = `lc-${run}`;
const caller: Caller = { name: 'e2e', admin: true };

describe('life cycle in real Glance', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let session: SyncSession;

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-e2e-lifecycle-'));
    const policy =
      '      retire: { mode: delete }\n' +
      `      families: { keep: 2, latestName: '${prefix}{family}-latest' }\n` +
      '      retries: { attempts: 2, backoff: 1s }\n';
    const file = join(dir, 'visor.yaml');
    const clouds = glanceCloudYaml('glance', peer, { tag, prefix }, policy);
    const agent = `agent: { id: lc-agent-${run}, leaseSeconds: 10 }\n`;
    const head = `dataDir: ${join(dir, 'data')}\nlogging: { level: error }\n${agent}`;
    await writeFile(file, `${head}clouds:\n${clouds}`);
    session = await openSession({ configFile: file, env: {}, logger: silentLogger });
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    await session?.close();
    // Protected copies cannot be deleted in Glance: clear the flag on ours first.
    const api = await glanceApi(peer, 'admin');
    for (const image of await imagesNamed(peer, prefix)) {
      await api
        .patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/protected', value: false }], {
          headers: { 'Content-Type': 'application/openstack-images-v2.1-json-patch' },
        })
        .catch(() => undefined);
    }
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  const add = async (name: string, extra: Record<string, unknown> = {}): Promise<Image> => {
    const file = join(dir, `${name}.raw`);
    await writeFile(file, randomBytes(256 * 1024));
    const image = await session.images.register(caller, {
      name,
      architecture: 'x86_64',
      diskFormat: 'raw',
      tags: [tag],
      access: 'public',
      ...extra,
    });
    return session.images.upload(caller, image.id, createReadStream(file), { size: (await stat(file)).size });
  };
  const sync = (now?: Date) =>
    syncTarget(session.built.targets.get('glance')!, now ? { ...session.deps, now: () => now } : session.deps, {
      trigger: 'cli',
    });
  const glance = async (id: string) =>
    (await (await glanceApi(peer!, 'admin')).get(`/v2/images/${id}`)).data as Record<string, unknown>;
  const ours = async () => (await imagesNamed(peer!, prefix)).filter((i) => i.status !== 'deleted');
  const nativeOf = async (image: Image) => {
    const found = [];
    for (const i of await ours()) if ((await glance(i.id))['visor_image_id'] === image.id) found.push(i.id);
    return found;
  };

  it('deprecated -> obsolete (os_hidden) -> deleted, the replacement named by its Glance id', async (ctx) => {
    if (skip) ctx.skip(skip);
    const old = await add('old');
    const fresh = await add('new');
    expect((await sync()).drift).toBe(0);
    const [oldNative] = await nativeOf(old);
    const [freshNative] = await nativeOf(fresh);
    expect(oldNative).toBeDefined();

    await session.images.deprecate(caller, old.id, {
      replacement: fresh.id,
      obsoleteOn: '2099-01-01',
      deleteOn: '2099-02-01',
    });
    const flagged = await sync();
    expect(flagged.actions.map((a) => `${a.action}:${a.result}`)).toEqual(['update:updated']);
    expect(await glance(oldNative!)).toMatchObject({
      status: 'active',
      os_hidden: false,
      visor_lifecycle: 'deprecated',
      visor_replacement: freshNative,
      visor_replacement_id: fresh.id,
      visor_obsolete_on: '2099-01-01T00:00:00.000Z',
      visor_delete_on: '2099-02-01T00:00:00.000Z',
    });

    const obsolete = await sync(new Date('2099-01-02T00:00:00Z'));
    expect(obsolete.actions).toEqual([expect.objectContaining({ action: 'retire', result: 'retired' })]);
    expect(await glance(oldNative!)).toMatchObject({ status: 'active', os_hidden: true });

    const deleted = await sync(new Date('2099-02-02T00:00:00Z'));
    expect(deleted.actions).toEqual([
      expect.objectContaining({ action: 'retire', result: 'retired', nativeId: oldNative }),
    ]);
    expect(await nativeOf(old)).toEqual([]);
    expect(await glance(freshNative!)).toMatchObject({ status: 'active', os_hidden: false });
    // Undeprecating the replacement's sibling is not needed: the replacement itself was never touched.
    expect((await glance(freshNative!))['visor_lifecycle']).toBeUndefined();
  });

  it('undeprecating an obsolete image shows its hidden copy again: same Glance id, no second upload', async (ctx) => {
    if (skip) ctx.skip(skip);
    const image = await add('back');
    expect((await sync()).drift).toBe(0);
    const [native] = await nativeOf(image);
    const before = await glance(native!);
    await session.images.deprecate(caller, image.id, { obsoleteOn: '2099-01-01' });
    await sync();
    expect(await glance(native!)).toMatchObject({ os_hidden: false, visor_lifecycle: 'deprecated' });
    const hidden = await sync(new Date('2099-01-02T00:00:00Z'));
    // (Other tests' images share this catalog and cloud: only this image's copy is looked at.)
    const mine = (actions: typeof hidden.actions) => actions.filter((a) => a.imageId === image.id);
    expect(mine(hidden.actions).map((a) => `${a.action}:${a.result}`)).toEqual(['retire:retired']);
    expect(await glance(native!)).toMatchObject({ status: 'active', os_hidden: true });

    await session.images.undeprecate(caller, image.id);
    const back = await sync(new Date('2099-01-03T00:00:00Z'));
    expect(back.actions).toEqual([expect.objectContaining({ action: 'update', result: 'updated', nativeId: native })]);
    expect(back.actions.some((a) => a.action === 'create' || a.action === 'replace')).toBe(false);
    expect(back.actions[0]!.bytes ?? 0).toBe(0);
    const after = await glance(native!);
    expect(after).toMatchObject({ status: 'active', os_hidden: false });
    expect(after['visor_lifecycle']).toBeUndefined();
    // The very same Glance image and bits: one copy, created once, the same hash.
    expect(await nativeOf(image)).toEqual([native]);
    expect(after['created_at']).toBe(before['created_at']);
    expect(after['os_hash_value']).toBe(before['os_hash_value']);
    expect(mine((await sync(new Date('2099-01-03T00:00:00Z'))).actions)).toEqual([]);
  });

  it('protects a protected image in Glance too, and never removes its copy', async (ctx) => {
    if (skip) ctx.skip(skip);
    const image = await add('guarded', { protected: true });
    await sync();
    const [native] = await nativeOf(image);
    expect(await glance(native!)).toMatchObject({ protected: true, status: 'active' });
    await session.images.update(caller, image.id, { tags: [] }); // no longer selected: would be deleted
    const run1 = await sync();
    expect(run1.actions).toContainEqual(
      expect.objectContaining({ result: 'skipped', detail: expect.stringMatching(/protected/) }),
    );
    expect(await glance(native!)).toMatchObject({ protected: true, status: 'active', os_hidden: false });
    // Unprotected (and selected again, so that the flag is written): Glance's flag follows.
    await session.images.update(caller, image.id, { protected: false, tags: [tag] });
    await sync();
    expect((await glance(native!))['protected']).toBe(false);
  });

  it('rolls a family forward in Glance with keep: 2 over 4 versions, the latest name never missing', async (ctx) => {
    if (skip) ctx.skip(skip);
    const latestName = `${prefix}deb-latest`;
    const usableLatest = async () => {
      const out: string[] = [];
      for (const i of await ours()) {
        const g = await glance(i.id);
        if (g['name'] === latestName && g['status'] === 'active' && g['os_hidden'] !== true)
          out.push(String(g['visor_image_id']));
      }
      return out.sort();
    };
    const versions: Image[] = [];
    for (let v = 1; v <= 4; v++) {
      const added = await add(`deb-v${v}`, { family: 'deb' });
      versions.push(
        await session.images.catalog.images.update(added.id, added.revision, {
          uploadedAt: `2026-0${v}-01T00:00:00.000Z`,
        }),
      );
      await sync();
      const expected = v === 1 ? [versions[0]!.id] : [versions[v - 2]!.id, versions[v - 1]!.id].sort();
      expect(await usableLatest(), `v${v}: both carry the name until the new one is usable`).toEqual(expected);
      expect((await sync()).drift).toBe(0);
      expect(await usableLatest()).toEqual([versions[v - 1]!.id]);
    }
    const names = [];
    for (const i of await ours()) {
      const g = await glance(i.id);
      if (g['visor_family'] === 'deb') names.push(String(g['name']));
    }
    expect(names.sort()).toEqual([`${prefix}deb-v3`, latestName].sort());
  });
});
