import { get } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerCoordinator, startPeer } from './coordinator.js';
import { peerResult } from './index.js';
import { PeerError, type PeerDefinition, type PeerOutcome } from './peer.js';
import type { PeerName } from './registry.js';
import { debianTool } from './tools.js';

/** The peer machinery itself: one start per run, outcomes over HTTP, what a test gets. */

type Registry = Record<PeerName, PeerDefinition<unknown>>;

function definitions(overrides: Partial<Record<string, PeerDefinition<unknown>>>): Registry {
  return overrides as unknown as Registry;
}

const fetchJson = (url: string) =>
  new Promise<{ status: number; body: unknown }>((resolve, reject) => {
    get(url, (response) => {
      let text = '';
      response.on('data', (d: Buffer) => (text += d.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
    }).on('error', reject);
  });

describe('PeerCoordinator', () => {
  const coordinators: PeerCoordinator[] = [];
  afterEach(async () => {
    for (const c of coordinators.splice(0)) await c.close();
  });

  it('starts a peer once, however many test files ask at the same time, and tells them all the same', async () => {
    let starts = 0;
    const stops: unknown[] = [];
    const slow: PeerDefinition<{ port: number }> = {
      title: 'Slow server',
      usedBy: 'nothing',
      start: async () => {
        starts++;
        await new Promise((r) => setTimeout(r, 50));
        return { coordinates: { port: 4242 }, version: 'slow 1.0', reused: false };
      },
      stop: async (c) => void stops.push(c),
    };
    const coordinator = new PeerCoordinator(definitions({ slow: slow as PeerDefinition<unknown> }));
    coordinators.push(coordinator);
    const url = await coordinator.listen();
    const answers = await Promise.all(
      ['a.test.ts', 'b.test.ts', 'a.test.ts'].map((f) => fetchJson(`${url}/peers/slow?file=${f}`)),
    );
    expect(starts).toBe(1);
    for (const answer of answers)
      expect(answer).toMatchObject({
        status: 200,
        body: { state: 'ready', coordinates: { port: 4242 }, version: 'slow 1.0', reused: false },
      });
    expect(coordinator.report()).toEqual([
      expect.objectContaining({
        name: 'slow',
        title: 'Slow server',
        files: ['a.test.ts', 'b.test.ts'],
        pending: false,
      }),
    ]);
    await coordinator.close();
    expect(stops).toEqual([{ port: 4242 }]);
  });

  it('answers 404 naming the registry for a peer it does not know', async () => {
    const coordinator = new PeerCoordinator(definitions({}));
    coordinators.push(coordinator);
    const answer = await fetchJson(`${await coordinator.listen()}/peers/postgres`);
    expect(answer).toEqual({ status: 404, body: { error: 'no peer named "postgres" in test/peers/registry.ts' } });
  });

  it('keeps why a peer is not there: unavailable with its log, or failed with the error', async () => {
    const missing: PeerDefinition<unknown> = {
      title: 'Missing',
      usedBy: '',
      start: () => Promise.reject(new PeerError('unavailable', 'needs root', 'apt says no')),
    };
    const broken: PeerDefinition<unknown> = {
      title: 'Broken',
      usedBy: '',
      start: () => Promise.reject(new Error('port 1 is in use')),
    };
    await expect(startPeer(missing)).resolves.toMatchObject({
      state: 'unavailable',
      reason: 'needs root',
      log: 'apt says no',
    });
    const failed = await startPeer(broken);
    expect(failed).toMatchObject({ state: 'failed', reason: 'port 1 is in use' });
    expect(failed.state === 'failed' && failed.log).toContain('Error: port 1 is in use');
  });

  it('never stops a peer that did not start', async () => {
    const stops: string[] = [];
    const broken: PeerDefinition<unknown> = {
      title: 'Broken',
      usedBy: '',
      start: () => Promise.reject(new Error('no')),
      stop: async () => void stops.push('broken'),
    };
    const coordinator = new PeerCoordinator(definitions({ broken }));
    await coordinator.ensure('broken' as PeerName);
    await coordinator.close();
    expect(stops).toEqual([]);
  });
});

describe('a command-line tool as a peer', () => {
  const tool = debianTool({ command: 'openssl', pkg: 'openssl', versionArgs: ['version'], usedBy: '' });

  it('is unavailable, naming the variable and the path, when VISOR_TEST_BIN_<TOOL> points at nothing', async () => {
    process.env['VISOR_TEST_BIN_OPENSSL'] = '/nonexistent/openssl';
    try {
      const outcome = await startPeer(tool);
      expect(outcome).toMatchObject({
        state: 'unavailable',
        reason: 'openssl does not run from VISOR_TEST_BIN_OPENSSL=/nonexistent/openssl',
      });
      expect(outcome.state !== 'ready' && outcome.log).toContain('ENOENT');
    } finally {
      delete process.env['VISOR_TEST_BIN_OPENSSL'];
    }
  });

  it('reports the version the tool prints', async (ctx) => {
    const outcome = await startPeer(tool);
    if (outcome.state === 'unavailable') return ctx.skip(`openssl cannot run here: ${outcome.reason}`);
    expect(outcome).toMatchObject({
      state: 'ready',
      coordinates: { bin: 'openssl' },
      version: expect.stringMatching(/^OpenSSL \d+\.\d+/),
    });
  });
});

describe('what requirePeer hands a test', () => {
  const ready: PeerOutcome = {
    state: 'ready',
    coordinates: { bin: 'qemu-img' },
    version: 'qemu-img version 7.2',
    reused: true,
    ms: 3,
  };
  const unavailable: PeerOutcome = { state: 'unavailable', reason: 'needs root', log: 'E: not root', ms: 1 };
  const failed: PeerOutcome = {
    state: 'failed',
    reason: 'start-openstack.sh failed',
    log: '[start-openstack] ERROR: keystone db_sync failed',
    ms: 9,
  };

  it('the peer when it is ready, required or not', () => {
    expect(peerResult('qemu-img', ready, false)).toEqual({ peer: { bin: 'qemu-img' } });
    expect(peerResult('qemu-img', ready, true)).toEqual({ peer: { bin: 'qemu-img' } });
  });

  it('a skip with the reason when it cannot run here and peers are not required', () => {
    expect(peerResult('qemu-img', unavailable, false)).toEqual({ skip: 'qemu-img cannot run here: needs root' });
  });

  it('an error naming the peer, with its start log, when peers are required', () => {
    expect(() => peerResult('openstack', unavailable, true)).toThrow(
      'peer "openstack" (Keystone + Glance) cannot run here: needs root\n' +
        'VISOR_TEST_REQUIRE_PEERS=1 (as in CI): a peer that cannot run fails the tests that need it ' +
        'instead of skipping them.\n' +
        '--- start log of openstack ---\nE: not root',
    );
  });

  it('an error when it failed to start, even when peers are not required', () => {
    expect(() => peerResult('openstack', failed, false)).toThrow(
      'peer "openstack" (Keystone + Glance) did not start: start-openstack.sh failed\n' +
        '--- start log of openstack ---\n[start-openstack] ERROR: keystone db_sync failed',
    );
  });
});
