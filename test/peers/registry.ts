import { openStackPeer } from './openstack.js';
import { postgresPeer } from './postgresql-peer.js';
import { s3Peer } from './s3-peer.js';
import { debianTool } from './tools.js';

/**
 * Every real peer the tests run against, in one list. A peer starts at most once per test run,
 * when the first test asks for it (requirePeer in index.ts), in the main vitest process
 * (coordinator.ts), and is shared by every test file; the run's summary says what ran.
 *
 * Adding a peer takes a few lines: a `PeerDefinition` (peer.ts) and one entry here. Its
 * `start()` returns plain-JSON coordinates and a version, and throws `PeerError('unavailable')`
 * when the machine cannot run it (that is a skip on a laptop, a failure in CI). Examples:
 *
 * - a command-line tool: `'skopeo': debianTool({ command: 'skopeo', pkg: 'skopeo',
 *   versionArgs: ['--version'], usedBy: 'the OCI source tests' })`; tests run `peer.bin`.
 * - a server owned by this run (PostgreSQL, docker-registry, nginx, Chromium): `start()` makes a
 *   temporary folder, runs the server on a free loopback port (`runuser -u postgres -- initdb`
 *   and `pg_ctl start` for PostgreSQL; `docker-registry serve CONFIG`; `nginx -c CONF`;
 *   `/usr/bin/chromium --headless --remote-debugging-port=0 ...` with the flags the brief lists),
 *   returns `{ coordinates: { url }, version, reused: false }`, and `stop()` ends it and removes
 *   the folder: the coordinator calls it when the run ends. `ensurePackages` (debian.ts)
 *   installs its Debian packages; add them to the list in test/run.sh as well.
 * - a server shared machine-wide (like Keystone + Glance): `start()` first looks for a healthy
 *   running one and reuses it (`reused: true`), and there is no `stop()`.
 *
 * Then in a test: `const { peer, skip } = await requirePeer('postgresql')`, and
 * `if (skip) ctx.skip(skip)` in each test. Nothing else: the summary and the CI switch
 * (VISOR_TEST_REQUIRE_PEERS=1) pick the new peer up from this list.
 */
export const peerRegistry = {
  openstack: openStackPeer,
  s3: s3Peer,
  postgresql: postgresPeer,
  'qemu-img': debianTool({
    command: 'qemu-img',
    pkg: 'qemu-utils',
    versionArgs: ['--version'],
    usedBy: 'format detection, inspection and conversion; every suite that makes qcow2 or vmdk images',
  }),
  genisoimage: debianTool({
    command: 'genisoimage',
    pkg: 'genisoimage',
    versionArgs: ['--version'],
    usedBy: 'ISO detection (test/formats/detect)',
  }),
  openssl: debianTool({
    command: 'openssl',
    pkg: 'openssl',
    versionArgs: ['version'],
    usedBy: 'Eucalyptus bundles (certificates, the EC2 double unbundling), Glance over TLS',
  }),
};

export type PeerName = keyof typeof peerRegistry;

/** What `requirePeer(name)` hands a test: the coordinates the peer's `start()` returns. */
export type PeerCoordinates<N extends PeerName> = Awaited<ReturnType<(typeof peerRegistry)[N]['start']>>['coordinates'];

export const peerNames = Object.keys(peerRegistry) as PeerName[];
