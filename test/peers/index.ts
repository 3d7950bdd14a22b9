import { get } from 'node:http';
import { relative } from 'node:path';
import { expect, inject } from 'vitest';
import { startPeer } from './coordinator.js';
import { peersRequired, type PeerOutcome } from './peer.js';
import { peerRegistry, type PeerCoordinates, type PeerName } from './registry.js';

/**
 * The one way a test gets a real peer:
 *
 *   const { peer, skip } = await requirePeer('openstack');   // at the top of the file, or in beforeAll
 *   it('...', (ctx) => { if (skip) ctx.skip(skip); ... use peer ... });
 *
 * The peer starts once per run and is shared by all test files (registry.ts, coordinator.ts).
 * When it cannot run on this machine, `skip` says why and the tests report themselves skipped
 * with that reason: right on a laptop. Under VISOR_TEST_REQUIRE_PEERS=1 (set by .ci/run) the
 * same call throws instead, with the peer's start log, so the tests that need it fail. A peer
 * that should have started and did not (a failing start script) throws in either case.
 */
export async function requirePeer<N extends PeerName>(name: N): Promise<PeerResult<PeerCoordinates<N>>> {
  return peerResult(name, await outcomeOf(name), peersRequired()) as PeerResult<PeerCoordinates<N>>;
}

export { peersRequired };

export type PeerResult<C> = { peer: C; skip?: undefined } | { peer?: undefined; skip: string };

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the run's PeerCoordinator (test/setup/global-setup.ts). */
    visorPeerCoordinator: string;
  }
}

/** What a test gets for an outcome: the peer, a skip reason, or an error (see requirePeer). */
export function peerResult(name: PeerName, outcome: PeerOutcome, required: boolean): PeerResult<unknown> {
  if (outcome.state === 'ready') return { peer: outcome.coordinates };
  const title = peerRegistry[name].title;
  if (outcome.state === 'unavailable' && !required) return { skip: `${title} cannot run here: ${outcome.reason}` };
  const lines = [
    outcome.state === 'unavailable'
      ? `peer "${name}" (${title}) cannot run here: ${outcome.reason}`
      : `peer "${name}" (${title}) did not start: ${outcome.reason}`,
  ];
  if (outcome.state === 'unavailable') {
    lines.push(
      'VISOR_TEST_REQUIRE_PEERS=1 (as in CI): a peer that cannot run fails the tests that need it ' +
        'instead of skipping them.',
    );
  }
  lines.push(`--- start log of ${name} ---`, outcome.log || '(empty)');
  throw new Error(lines.join('\n'));
}

const local = new Map<PeerName, Promise<PeerOutcome>>();

async function outcomeOf(name: PeerName): Promise<PeerOutcome> {
  const coordinator = inject('visorPeerCoordinator');
  if (!coordinator) {
    // A vitest config without the project's globalSetup: start it here, once per worker.
    if (!local.has(name)) local.set(name, startPeer(peerRegistry[name]));
    return local.get(name)!;
  }
  const testPath = expect.getState().testPath;
  const query = testPath ? `?file=${encodeURIComponent(relative(process.cwd(), testPath))}` : '';
  return JSON.parse(await fetchText(`${coordinator}/peers/${encodeURIComponent(name)}${query}`)) as PeerOutcome;
}

/** node:http rather than fetch: a first start may take longer than fetch's 5-minute header timeout. */
function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (response.statusCode === 200) resolve(body);
        else reject(new Error(`peer coordinator at ${url}: ${response.statusCode} ${body}`));
      });
    }).on('error', reject);
  });
}
