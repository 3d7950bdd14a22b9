import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Caller } from '../../agent/service/access.js';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import type { Image } from '../../core/image/model.js';
import { deleteImagesNamed, glanceApi, imagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { openstackImageShow } from '../support/openstack-cli.js';
import { recordingLogger } from '../support/recording-logger.js';
import { sharedCloudScenario, type NativeRecord, type TargetName } from '../support/shared-cloud.js';

/**
 * Targets that share the real Glance: alpha and beta as admin in project admin (same naming, so
 * names cannot tell their copies apart), gamma as a member of project demo. Compared with
 * `openstack image show` before and after. Then the older marker scheme: a copy marked with the
 * agent only is adopted, not uploaded again — and left alone when two targets select it.
 */

const glanceOptions = (peer: OpenStackPeer, who: 'admin' | 'demo') => ({
  authUrl: peer.authUrl,
  region: peer.region,
  pollInterval: 0.2,
  auth: {
    type: 'password',
    username: peer[who].username,
    password: peer[who].password,
    projectName: peer[who].projectName,
  },
});

const properties = (record: NativeRecord) => (record['properties'] ?? {}) as Record<string, unknown>;

sharedCloudScenario(
  'Glance (real Keystone + Glance)',
  async () => {
    const { peer, skip } = await requirePeer('openstack');
    if (skip || !peer) return { skip: skip ?? 'no OpenStack peer' };
    const prefix = `shared-${randomBytes(3).toString('hex')}-`;
    return {
      cloud: (t: TargetName) => ({ adapter: 'glance', options: glanceOptions(peer, t === 'gamma' ? 'demo' : 'admin') }),
      naming: () => `${prefix}{name}`,
      // Glance keeps publishing images for admins (policy publicize_image): the member's copies stay private.
      policy: (t: TargetName) => (t === 'gamma' ? { visibility: { public: 'private' } } : {}),
      softRetire: 'hide',
      snapshot: async () =>
        openstackImageShow(
          peer,
          (await imagesNamed(peer, prefix)).map((i) => i.id),
        ),
      markers: (record) => {
        const p = properties(record);
        return {
          agent: p['visor_agent'] as string,
          target: p['visor_target'] as string,
          imageId: p['visor_image_id'] as string,
        };
      },
      retired: (record) => properties(record)['os_hidden'] === true,
      close: () => deleteImagesNamed(peer, prefix),
    };
  },
  peerStartTimeout,
);

describe('copies of the older marker scheme (agent only) in the real Glance', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let session: SyncSession | undefined;
  const run = randomBytes(3).toString('hex');
  const prefix = `legacy-${run}-`;
  const agentId = `legacy-agent-${run}`;
  const caller: Caller = { name: 'legacy', admin: true };
  let image: Image;
  let bits: Buffer;
  let oldId: string;

  const open = async (betaSelects: boolean) => {
    await session?.close();
    const sync = (tag: string) => ({
      selector: { tags: [tag], access: ['public', 'private'] },
      naming: `${prefix}{name}`,
      retire: { mode: 'hide' },
      retries: { attempts: 1 },
    });
    const config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: join(dir, 'data'),
        logging: { level: 'error' },
        agent: { id: agentId },
        clouds: {
          alpha: { adapter: 'glance', options: glanceOptions(peer!, 'admin'), sync: sync('old') },
          beta: {
            adapter: 'glance',
            options: glanceOptions(peer!, 'admin'),
            sync: sync(betaSelects ? 'old' : 'other'),
          },
          // Another project: it does not see the copy, so it never counts as a claimant.
          gamma: {
            adapter: 'glance',
            options: glanceOptions(peer!, 'demo'),
            sync: { ...sync('old'), visibility: { public: 'private' } },
          },
        },
      }),
    );
    session = await openSession({ configFile: config, env: {}, logger: log });
  };
  const log = recordingLogger();
  const sync = (target: string) => syncTarget(session!.built.targets.get(target)!, session!.deps, { trigger: 'cli' });
  const show = async () => (await openstackImageShow(peer!, [oldId])).get(oldId)!;

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-legacy-'));
    await open(true);
    bits = randomBytes(300 * 1024);
    const registered = await session!.images.register(caller, {
      name: 'old-image',
      architecture: 'x86_64',
      diskFormat: 'raw',
      tags: ['old'],
      access: 'public',
    });
    image = await session!.images.upload(caller, registered.id, Readable.from([bits]), { size: bits.length });
    // What an agent before targets were named left behind: its markers without visor_target.
    const api = await glanceApi(peer, 'admin');
    const created = await api.post('/v2/images', {
      name: `${prefix}old-image`,
      disk_format: 'raw',
      container_format: 'bare',
      visibility: 'public',
      architecture: 'x86_64',
      visor_agent: agentId,
      visor_image_id: image.id,
      visor_sha256: image.checksums.sha256,
      visor_revision: String(image.revision),
    });
    expect(created.status).toBe(201);
    oldId = String(created.data.id);
    const put = await api.put(`/v2/images/${oldId}/file`, bits, {
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    expect(put.status).toBe(204);
  }, peerStartTimeout);
  afterAll(async () => {
    await session?.close();
    if (peer && !skip) await deleteImagesNamed(peer, prefix);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is left alone, and reported, while two targets that see it select it', async (ctx) => {
    if (skip) ctx.skip(skip);
    const before = await show();
    for (const target of ['alpha', 'beta']) {
      const result = await sync(target);
      // Neither claims the copy nor uploads a second one beside it, and each run says so.
      expect(result.actions, target).toEqual([]);
      const warned = log.lines.filter(
        (l) => l.level === 'warn' && l.meta['target'] === target && l.meta['native'] === oldId,
      );
      expect(warned.map((l) => l.message)).toContain('left alone');
    }
    const { planTarget } = await import('../../agent/sync/runner.js');
    const plan = await planTarget(session!.built.targets.get('alpha')!, session!.deps);
    expect(plan.notes).toEqual([
      expect.objectContaining({ nativeId: oldId, message: expect.stringMatching(/targets alpha, beta all select it/) }),
    ]);
    expect(await show()).toEqual(before);
  });

  it('is adopted by the one target that selects it: markers name the target, nothing uploaded', async (ctx) => {
    if (skip) ctx.skip(skip);
    await open(false);
    const before = await show();
    const result = await sync('alpha');
    expect(result.status, JSON.stringify(result.actions)).toBe('succeeded');
    expect(result.actions.map((a) => `${a.action}:${a.result}:${a.nativeId}`)).toEqual([`adopt:adopted:${oldId}`]);
    expect(result.actions[0]!.bytes ?? 0).toBe(0);
    expect(result.drift).toBe(0);
    const after = await show();
    // The same image with the same bits; only the marker that names the target was added.
    expect(after).toMatchObject({
      id: oldId,
      checksum: before['checksum'],
      size: bits.length,
      status: 'active',
      visibility: 'public',
      name: `${prefix}old-image`,
    });
    expect(properties(after)).toEqual({ ...properties(before), visor_target: 'alpha' });
    expect((await imagesNamed(peer!, prefix)).map((i) => i.id)).toEqual([oldId]);
    // Beta (no longer selecting it) and gamma (another project, its own copy) never touched it.
    expect((await sync('beta')).actions).toEqual([]);
    const gamma = await sync('gamma');
    expect(gamma.actions.map((a) => `${a.action}:${a.result}`)).toEqual(['create:created']);
    expect(gamma.actions[0]!.nativeId).not.toBe(oldId);
    expect((await sync('alpha')).actions).toEqual([]);
    expect(await show()).toEqual(after);
  });
});
