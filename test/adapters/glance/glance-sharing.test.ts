import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syncTarget } from '../../../agent/sync/runner.js';
import { shareKey, type ShareRecord } from '../../../agent/sync/share-plan.js';
import type { GlanceDriver } from '../../../adapters/glance/index.js';
import { requirePeer } from '../../peers/index.js';
import type { OpenStackPeer } from '../../peers/openstack.js';
import { runVisorAsync } from '../../support/cli.js';
import { memorySyncWorld, type MemorySyncWorld } from '../../support/memory-sync.js';
import { deleteImagesNamed, glanceApi, makeDriver, peerStartTimeout } from './harness.js';
import { createMemberProjects, type MemberProject, type MemberProjects } from './member-projects.js';

/**
 * Sharing through the agent, in the real Glance, checked as the member project sees it with
 * Debian's `openstack` CLI: shared with the project mapped from the catalog member (accepted with
 * its credentials), a second sync that does nothing, the member removed when the catalog drops
 * it while a member added by hand stays, and a private catalog image never shown to a member.
 * The member projects are this test's own, made in the shared Keystone and removed after.
 */

const { peer: started, skip } = await requirePeer('openstack');
const run = promisify(execFile);

async function asProject(
  peer: OpenStackPeer,
  project: MemberProject,
  args: string[],
): Promise<{ ok: boolean; out: string }> {
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? '/root',
    OS_AUTH_URL: peer.authUrl,
    OS_IDENTITY_API_VERSION: '3',
    OS_AUTH_TYPE: 'password',
    OS_USERNAME: project.username,
    OS_PASSWORD: project.password,
    OS_PROJECT_NAME: project.name,
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_REGION_NAME: peer.region,
    OS_INTERFACE: 'public',
    OS_IMAGE_API_VERSION: '2',
  };
  try {
    const { stdout } = await run('openstack', args, { env, timeout: 120_000 });
    return { ok: true, out: stdout };
  } catch (error) {
    return { ok: false, out: String((error as { stderr?: string }).stderr ?? error) };
  }
}

/** `visor where ID --json` on the world's catalog, its cloud `lab` being this Glance as admin. */
async function where(peer: OpenStackPeer, world: MemorySyncWorld, id: string) {
  const config = join(world.dir, 'visor.yaml');
  const user = peer.admin;
  const auth =
    `{ type: password, username: ${user.username}, password: '${user.password}', ` +
    `projectName: ${user.projectName} }`;
  await writeFile(
    config,
    `dataDir: ${world.dir}\nlogging: { level: error }\nagent: { id: ${world.agentId} }\nclouds:\n  lab:\n` +
      `    adapter: glance\n    options: { authUrl: '${peer.authUrl}', region: ${peer.region}, auth: ${auth} }\n`,
  );
  const result = await runVisorAsync(['shares', id, '--json', '-c', config], { env: { HOME: world.dir } });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as { copies: Array<{ cloud: string; nativeId: string; members: unknown[] }> };
}

const listed = async (peer: OpenStackPeer, project: MemberProject, id: string) => {
  const result = await asProject(peer, project, ['image', 'list', '-f', 'json']);
  expect(result.ok, result.out).toBe(true);
  return (JSON.parse(result.out) as Array<{ ID: string }>).some((i) => i.ID === id);
};
const shown = async (peer: OpenStackPeer, project: MemberProject, id: string) =>
  (await asProject(peer, project, ['image', 'show', '-f', 'json', id])).ok;

describe('sharing in the real Glance, as the member project sees it', () => {
  const prefix = `visor-share-${randomBytes(3).toString('hex')}-`;
  let peer: OpenStackPeer;
  let members: MemberProjects;
  let one: MemberProject;
  let hand: MemberProject;
  let world: MemorySyncWorld;
  let driver: GlanceDriver;

  beforeAll(async () => {
    if (skip) return;
    peer = started as OpenStackPeer;
    members = await createMemberProjects(peer, 2, 'share');
    [one, hand] = members.projects as [MemberProject, MemberProject];
    world = await memorySyncWorld();
    driver = makeDriver(peer, 'admin', { memberCredentials: [one.credentials] });
  }, peerStartTimeout);
  afterAll(async () => {
    await driver?.close();
    await world?.close();
    if (peer) await deleteImagesNamed(peer, prefix);
    await members?.remove();
  });

  const target = (extra: Record<string, unknown> = {}, name = 'lab') =>
    world.target(
      {
        selector: { names: [`${prefix}*`], access: ['public', 'shared'] },
        sharing: { members: { 'vo.one': one.id } },
        ...extra,
      },
      { driver },
      name,
    );

  it('shares, keeps in step, removes what the catalog drops, and leaves a member added by hand', async (ctx) => {
    if (skip) ctx.skip(skip);
    const image = await world.addImage(`${prefix}vo`, randomBytes(64 * 1024), {
      access: 'shared',
      members: ['vo.one'],
    });
    const first = await syncTarget(target(), world.deps(), { trigger: 'manual' });
    expect(first, JSON.stringify(first.actions)).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(first.actions.map((a) => `${a.action}:${a.result}`).sort()).toEqual(['create:created', 'share:updated']);
    const copy = (await driver.list()).find((c) => c.markers?.imageId === image.id)!;
    expect(copy.access).toBe('shared');
    expect(await driver.members(copy.nativeId)).toEqual([{ principal: one.id, status: 'accepted' }]);
    // As the member project: `openstack image list` and `openstack image show` see it.
    expect(await listed(peer, one, copy.nativeId)).toBe(true);
    expect(await shown(peer, one, copy.nativeId)).toBe(true);
    // A project that is no member sees nothing.
    expect(await shown(peer, hand, copy.nativeId)).toBe(false);

    const again = await syncTarget(target(), world.deps(), { trigger: 'manual' });
    expect(again).toMatchObject({ status: 'succeeded', actions: [], drift: 0 });
    // `visor where`: per cloud, who the copy is shared with, and the state of the membership.
    const seen = await where(peer, world, image.id);
    expect(seen.copies).toEqual([
      expect.objectContaining({
        cloud: 'lab',
        nativeId: copy.nativeId,
        members: [{ principal: one.id, status: 'accepted', by: 'visor' }],
      }),
    ]);

    // A member added by hand, outside visor, and accepted by its project.
    const admin = await glanceApi(peer, 'admin');
    expect((await admin.post(`/v2/images/${copy.nativeId}/members`, { member: hand.id })).status).toBe(200);
    const own = await hand.glance();
    const accepted = await own.put(`/v2/images/${copy.nativeId}/members/${hand.id}`, { status: 'accepted' });
    expect(accepted.status).toBe(200);

    // The catalog drops vo.one: it is gone for that project on the next sync; the hand-made member stays.
    await world.catalog.images.update(image.id, image.revision, { members: [] });
    const third = await syncTarget(target(), world.deps(), { trigger: 'manual' });
    expect(third, JSON.stringify(third.actions)).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(third.actions.find((a) => a.action === 'share')?.detail).toContain(`stop sharing with ${one.id}`);
    expect(await listed(peer, one, copy.nativeId)).toBe(false);
    expect(await shown(peer, one, copy.nativeId)).toBe(false);
    expect(await listed(peer, hand, copy.nativeId)).toBe(true);
    expect((await driver.members(copy.nativeId)).map((m) => m.principal)).toEqual([hand.id]);
    const record = await world.catalog.state.get<ShareRecord>(shareKey('lab', copy.nativeId));
    expect(record?.managed ?? []).toEqual([]);
    expect(record?.members).toEqual([{ principal: hand.id, status: 'accepted' }]);
    const later = await where(peer, world, image.id);
    expect(later.copies[0]?.members).toEqual([{ principal: hand.id, status: 'accepted', by: 'other' }]);
    const fourth = await syncTarget(target(), world.deps(), { trigger: 'manual' });
    expect(fourth).toMatchObject({ status: 'succeeded', actions: [], drift: 0 });
  }, 600_000);

  it('never shows an image that is private in the catalog to a member, whatever shareWith says', async (ctx) => {
    if (skip) ctx.skip(skip);
    const image = await world.addImage(`${prefix}private`, randomBytes(16 * 1024), { access: 'private' });
    const privateTarget = target(
      {
        selector: { names: [`${prefix}private`], access: ['private'] },
        sharing: { members: { 'vo.one': one.id }, shareWith: [one.id] },
      },
      'lab-private',
    );
    const result = await syncTarget(privateTarget, world.deps(), { trigger: 'manual' });
    expect(result, JSON.stringify(result.actions)).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(result.actions.map((a) => a.action)).toEqual(['create']);
    const copy = (await driver.list()).find((c) => c.markers?.imageId === image.id)!;
    expect(copy.access).toBe('private');
    expect(await driver.members(copy.nativeId)).toEqual([]);
    expect(await listed(peer, one, copy.nativeId)).toBe(false);
    expect(await shown(peer, one, copy.nativeId)).toBe(false);
  }, 600_000);
});
