import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDaemon } from '../../agent/daemon.js';
import { openSession } from '../../agent/session.js';
import type { RunRecord } from '../../core/catalog/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { runVisorAsync } from '../support/cli.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { addImage, glanceProblems, makeDisk, writeSyncConfig } from '../support/glance-sync.js';

/**
 * One dead cloud must not hold up the others. Three clouds in one config: `healthy` (the real
 * Glance), `blackhole` (a Keystone that works, and a Glance endpoint that takes connections and
 * never answers) and `refused` (a Keystone port where nothing listens). The healthy cloud's run,
 * with the two dead ones running beside it, takes about as long as alone; the dead ones fail with
 * a clear error. Shown with the daemon (`AgentDaemon`) and with `visor sync`.
 */
const run = randomBytes(3).toString('hex');
const prefix = `dead-${run}-`;
const tag = `dead-${run}`;
const agentId = `dead-agent-${run}`;

const duration = (r: RunRecord) => Date.parse(r.finishedAt!) - Date.parse(r.startedAt);

describe('a dead cloud beside a healthy one', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let config: string;
  let blackhole: FaultProxy;
  let daemon: AgentDaemon | undefined;
  const figures: string[] = [];
  let aloneRun: RunRecord | undefined;

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    skip ??= (await requirePeer('qemu-img')).skip;
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-dead-'));
    // Keystone passes; every Glance request is swallowed (read, never answered).
    blackhole = await FaultProxy.start({ keystone: new URL(peer.authUrl).origin, glance: peer.glanceUrl, seed: 1 });
    blackhole.tap = {
      onRequest: (info) => (info.service === 'glance' ? { kind: 'hang', stage: 'before' } : undefined),
    };
    // A port that was free a moment ago: connections are refused.
    const probe = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => probe.once('listening', r));
    const refusedPort = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const dead = {
      peer,
      prefix: `${prefix}x-`,
      tag,
      requestTimeout: 3,
      attempts: 3,
      backoff: '200ms',
      listTimeout: '30s',
    };
    config = await writeSyncConfig(dir, agentId, [
      { name: 'healthy', authUrl: peer.authUrl, peer, prefix, tag, requestTimeout: 10 },
      { name: 'blackhole', authUrl: blackhole.authUrl, ...dead },
      { name: 'refused', authUrl: `http://127.0.0.1:${refusedPort}/v3`, ...dead },
    ]);
    const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    try {
      const specs = [
        ['one', 'raw', 2 * 1024 * 1024],
        ['two', 'qcow2', 2 * 1024 * 1024],
        ['three', 'raw', 1024 * 1024],
        ['four', 'qcow2', 1024 * 1024],
      ] as const;
      for (const [name, format, bytes] of specs)
        await addImage(session.images, name, await makeDisk(dir, name, format, bytes), format, [tag]);
    } finally {
      await session.close();
    }
    daemon = new AgentDaemon({ configFile: config, env: {}, logger: silentLogger, host: '127.0.0.1', port: 0 });
    await daemon.start();
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    if (figures.length > 0) console.log(`dead target:\n  ${figures.join('\n  ')}`);
    await daemon?.stop(1000);
    await blackhole?.close();
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  /** The healthy cloud's copies gone again, so that its next run does the same work (4 uploads). */
  const reset = () => deleteImagesNamed(peer!, prefix);

  it(
    'the daemon: the healthy cloud syncs in about the ' + 'time it takes alone; the dead ones fail clearly',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const d = daemon!;
      const warm = await d.trigger('healthy');
      expect(warm.status).toBe('succeeded');
      await reset();
      const alone = await d.trigger('healthy');
      expect(alone).toMatchObject({ status: 'succeeded', drift: 0 });
      expect(alone.actions.map((a) => a.result)).toEqual(['created', 'created', 'created', 'created']);
      aloneRun = alone;
      await reset();

      const started = Date.now();
      const settled = new Map<string, number>();
      const runs = await Promise.all(
        ['healthy', 'blackhole', 'refused'].map((name) =>
          d.trigger(name).then((r) => {
            settled.set(name, Date.now() - started);
            return r;
          }),
        ),
      );
      const [healthy, dead, refused] = runs as [RunRecord, RunRecord, RunRecord];
      expect(healthy).toMatchObject({ status: 'succeeded', drift: 0 });
      expect(healthy.actions.map((a) => a.result)).toEqual(['created', 'created', 'created', 'created']);
      expect(dead.status).toBe('failed');
      expect(dead.error).toMatch(/^Glance: listing images: no answer in time/);
      expect(refused.status).toBe('failed');
      expect(refused.error).toMatch(
        new RegExp(
          String.raw`^Keystone at http:\/\/127\.0\.0\.1:\d+\/v3\/auth\/tokens: ` +
            String.raw`authenticating user "admin" \(domain Default\): ECONNREFUSED`,
        ),
      );
      // Not held up: about the time alone (a margin for a shared 2-core machine), and done long before the black hole
      // gave up.
      expect(duration(healthy)).toBeLessThanOrEqual(Math.max(duration(alone) * 1.5, duration(alone) + 2000));
      expect(settled.get('healthy')!).toBeLessThan(settled.get('blackhole')!);
      expect((await d.status()).map((s) => [s.name, s.lastRun?.status])).toEqual([
        ['healthy', 'succeeded'],
        ['blackhole', 'failed'],
        ['refused', 'failed'],
      ]);
      const session = await openSession({ configFile: config, env: {}, logger: silentLogger });
      try {
        expect((await glanceProblems({ peer: peer!, session, prefix, tag, agentId, retire: 'hide' })).problems).toEqual(
          [],
        );
      } finally {
        await session.close();
      }
      figures.push(
        `daemon: healthy alone ${duration(alone)} ms (warm-up ${duration(warm)} ms); ` +
          `healthy beside the dead ones ${duration(healthy)} ms; ` +
          `blackhole failed after ${duration(dead)} ms, refused after ${duration(refused)} ms`,
        `  blackhole: ${dead.error}`,
        `  refused: ${refused.error}`,
      );
    },
  );

  it('visor sync: the same, and exit code 3 (partial failure)', async (ctx) => {
    if (skip) ctx.skip(skip);
    if (!aloneRun) ctx.skip('needs the time of the healthy cloud alone, measured by the test before');
    await reset();
    const started = Date.now();
    const result = await runVisorAsync(['sync', '-c', config, '--json'], { env: { HOME: dir } });
    const wall = Date.now() - started;
    expect(result.code, result.stderr).toBe(3);
    const { runs } = JSON.parse(result.stdout) as { runs: RunRecord[] };
    const byName = new Map(runs.map((r) => [r.target, r]));
    const healthy = byName.get('healthy')!;
    expect(healthy).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(healthy.actions.map((a) => a.result)).toEqual(['created', 'created', 'created', 'created']);
    expect(byName.get('blackhole')).toMatchObject({
      status: 'failed',
      error: expect.stringMatching(/^Glance: listing images: no answer in time/),
    });
    expect(byName.get('refused')).toMatchObject({ status: 'failed', error: expect.stringMatching(/ECONNREFUSED/) });
    const alone = aloneRun!;
    expect(duration(healthy)).toBeLessThanOrEqual(Math.max(duration(alone) * 1.5, duration(alone) + 2000));
    expect(duration(healthy)).toBeLessThan(duration(byName.get('blackhole')!));
    figures.push(
      `visor sync: healthy ${duration(healthy)} ms beside the dead ones (alone: ${duration(alone)} ms); ` +
        `blackhole ${duration(byName.get('blackhole')!)} ms; ` +
        `refused ${duration(byName.get('refused')!)} ms; whole command ${wall} ms, exit 3`,
    );
  });
});
