import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../../agent/session.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, glanceApi, imagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { runVisorAsync, visorBin } from '../support/cli.js';
import { writeConfig } from './glance-config.js';

/**
 * kill -9 of `visor sync` in the middle of an upload into real Glance, then one more run:
 * exactly one good copy in Glance, nothing stuck or partial, the catalog consistent.
 */
describe('kill -9 in the middle of an upload into Glance', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let config: string;
  let prefix: string;

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-e2e-crash-'));
    const run = randomBytes(3).toString('hex');
    prefix = `crash-${run}-`;
    config = await writeConfig(dir, peer, { run, prefix, tag: `crash-${run}` });
  }, peerStartTimeout);
  afterAll(async () => {
    if (!peer || skip) return;
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves exactly one good copy after a restart and one more run', async (ctx) => {
    if (skip) ctx.skip(skip);
    const tag = prefix.slice(0, -1);
    // 400 MiB: long enough an upload to be caught in the middle.
    const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    const file = join(dir, 'big.raw');
    const { createWriteStream } = await import('node:fs');
    const { pipeline } = await import('node:stream/promises');
    let left = 400;
    await pipeline(
      new Readable({
        read() {
          this.push(left-- > 0 ? randomBytes(1024 * 1024) : null);
        },
      }),
      createWriteStream(file),
    );
    const registered = await session.images.register(
      { name: 'e2e', admin: true },
      { name: 'big', architecture: 'x86_64', diskFormat: 'raw', tags: [tag], access: 'public' },
    );
    const image = await session.images.upload({ name: 'e2e', admin: true }, registered.id, createReadStream(file), {
      size: (await stat(file)).size,
    });
    await session.close();

    const child = spawn(process.execPath, [visorBin, 'sync', '-c', config], {
      env: { PATH: process.env['PATH'], HOME: dir },
      stdio: 'ignore',
    });
    const exited = new Promise((r) => child.once('exit', r));
    // Wait until Glance is receiving the bytes, then kill the agent without warning.
    let caught = false;
    for (let i = 0; i < 600 && !caught; i++) {
      const copies = await imagesNamed(peer!, `${prefix}big`);
      if (copies.some((c) => c.status === 'saving')) caught = true;
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(caught, 'the upload was never seen in progress').toBe(true);
    child.kill('SIGKILL');
    await exited;
    const during = await imagesNamed(peer!, `${prefix}big`);
    expect(during.length).toBeGreaterThanOrEqual(1);

    // The killed run's lease expires (agent.leaseSeconds: 10); a restarted agent then syncs.
    const verify = await openSession({ configFile: config, env: {}, logger: silentLogger });
    const lease = await verify.deps.catalog.leases.get('target:glance');
    await verify.close();
    if (lease) await new Promise((r) => setTimeout(r, Math.max(0, lease.expiresAt - Date.now()) + 500));
    const again = await runVisorAsync(['sync', '-c', config, '--json'], { env: { HOME: dir } });
    expect(again.code, again.stderr).toBe(0);

    const copies = await imagesNamed(peer!, `${prefix}big`);
    const api = await glanceApi(peer!, 'admin');
    const details = await Promise.all(
      copies.map(async (c) => (await api.get(`/v2/images/${c.id}`)).data as Record<string, unknown>),
    );
    const good = details.filter(
      (d) =>
        d['status'] === 'active' &&
        d['visor_image_id'] === image.id &&
        d['checksum'] === image.checksums.md5 &&
        d['size'] === image.size,
    );
    expect(good).toHaveLength(1);
    expect(details.filter((d) => d['status'] !== 'active')).toEqual([]);
    expect(details).toHaveLength(1);

    const after = await openSession({ configFile: config, env: {}, logger: silentLogger });
    try {
      const runs = await after.deps.catalog.runs.list({ target: 'glance' });
      // The run after the kill succeeded with nothing left, and marked the killed one as abandoned.
      expect(runs[0]).toMatchObject({ status: 'succeeded', drift: 0 });
      expect(runs.filter((r) => r.status === 'running')).toEqual([]);
      expect(runs.some((r) => r.error?.startsWith('abandoned'))).toBe(true);
      expect(await after.deps.catalog.images.get(image.id)).toMatchObject({
        status: 'available',
        revision: image.revision,
      });
    } finally {
      await after.close();
    }
  }, 600_000);
});
