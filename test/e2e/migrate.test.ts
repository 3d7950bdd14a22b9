import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../../agent/session.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, glanceApi, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { runVisorAsync, stackLine } from '../support/cli.js';

/** `visor migrate`: an image of the real Glance pulled into the catalog and pushed into OpenNebula. */
describe('visor migrate --from glance --to opennebula', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let one: OpenNebulaDouble;
  let dir: string;
  let config: string;
  const name = `migrate-${randomBytes(3).toString('hex')}`;
  const data = randomBytes(1024 * 1024 + 7);
  let glanceId: string;
  let before: Record<string, unknown>;

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    if (skip || !peer) return;
    one = await startOpenNebulaDouble();
    dir = await mkdtemp(join(tmpdir(), 'visor-migrate-'));
    config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: migrate-agent }
clouds:
  glance:
    adapter: glance
    options:
      authUrl: ${peer.authUrl}
      pollInterval: 1
      auth: { type: password, username: ${peer.admin.username}, password: ` +
        `'${peer.admin.password}', projectName: ${peer.admin.projectName} }
  one:
    adapter: opennebula
    options: { endpoint: '${one.endpoint}', username: oneadmin, ` +
        `password: opennebula, datastore: default, pollInterval: 0.05 }
    sync: { retire: { mode: delete } }
`,
    );
    const api = await glanceApi(peer, 'admin');
    glanceId = (
      await api.post('/v2/images', {
        name,
        disk_format: 'raw',
        container_format: 'bare',
        visibility: 'public',
        os_distro: 'cirros',
      })
    ).data.id as string;
    await api.put(`/v2/images/${glanceId}/file`, data, { headers: { 'Content-Type': 'application/octet-stream' } });
    before = (await api.get(`/v2/images/${glanceId}`)).data as Record<string, unknown>;
  }, peerStartTimeout);
  afterAll(async () => {
    if (skip || !peer) return;
    await expectValidDocuments([one]);
    await one.close();
    await deleteImagesNamed(peer, name);
    await rm(dir, { recursive: true, force: true });
  });

  it('pulls the image with its bits into the catalog and pushes it into the other cloud', async (ctx) => {
    if (skip) ctx.skip(skip);
    const result = await runVisorAsync(['migrate', '-c', config, '--from', 'glance', '--to', 'one', '--name', name], {
      env: { HOME: dir },
    });
    expect(result.stderr).not.toMatch(stackLine);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/migrate glance -> one: 1 image\(s\) pulled; push succeeded/);

    const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    try {
      const pulled = (await session.deps.catalog.images.list({ filters: { 'properties.visor_origin_id': glanceId } }))
        .items;
      expect(pulled).toHaveLength(1);
      expect(pulled[0]).toMatchObject({
        name,
        status: 'available',
        size: data.length,
        checksums: {
          md5: createHash('md5').update(data).digest('hex'),
          sha256: createHash('sha256').update(data).digest('hex'),
          sha512: createHash('sha512').update(data).digest('hex'),
        },
        properties: { visor_origin_target: 'glance' },
      });
      const copies = one.images().filter((i) => i.template.get('VISOR_IMAGE_ID') === pulled[0]!.id);
      expect(copies).toHaveLength(1);
      expect(copies[0]!.state).toBe(1);
    } finally {
      await session.close();
    }
    // The source is left as it was.
    expect((await (await glanceApi(peer!, 'admin')).get(`/v2/images/${glanceId}`)).data).toEqual(before);

    // Again: nothing to pull, nothing to push.
    const again = await runVisorAsync(
      ['migrate', '-c', config, '--from', 'glance', '--to', 'one', '--name', name, '--json'],
      { env: { HOME: dir } },
    );
    expect(again.code, again.stderr).toBe(0);
    const body = JSON.parse(again.stdout) as { pulled: unknown[]; run: { actions: unknown[] } };
    expect(body.pulled).toEqual([]);
    expect(body.run.actions).toEqual([]);
  }, 300_000);

  it('refuses to pull an unsafe image (a qcow2 Glance holds as raw), keeping nothing of it', async (ctx) => {
    if (skip) ctx.skip(skip);
    const qemuSkip = (await requirePeer('qemu-img')).skip;
    if (qemuSkip) ctx.skip(qemuSkip);
    const liar = `${name}-liar`;
    const file = join(dir, 'liar.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
    const api = await glanceApi(peer!, 'admin');
    const record = { name: liar, disk_format: 'raw', container_format: 'bare', visibility: 'public' };
    const id = (await api.post('/v2/images', record)).data.id as string;
    const octets = { headers: { 'Content-Type': 'application/octet-stream' } };
    await api.put(`/v2/images/${id}/file`, await readFile(file), octets);
    const storeBefore = await readdir(join(dir, 'data', 'images')).catch(() => []);

    const args = ['migrate', '-c', config, '--from', 'glance', '--to', 'one', '--name', liar, '--json'];
    const result = await runVisorAsync(args, { env: { HOME: dir } });
    expect(result.code, result.stderr).not.toBe(0);
    const body = JSON.parse(result.stdout) as { pulled: { result: string; error?: { kind: string } }[] };
    const reason = expect.stringMatching(/declared raw, but the content is qcow2/);
    expect(body.pulled).toMatchObject([{ result: 'failed', error: { kind: 'unsafe', message: reason } }]);
    expect(result.stderr).not.toMatch(stackLine);

    const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    try {
      const pulled = await session.deps.catalog.images.list({ filters: { 'properties.visor_origin_id': id } });
      expect(pulled.items).toEqual([]);
    } finally {
      await session.close();
    }
    expect(await readdir(join(dir, 'data', 'images')).catch(() => [])).toEqual(storeBefore);
  }, 300_000);
});
