import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { packageVersions } from './debian.js';
import { PeerError, startLog, type PeerDefinition } from './peer.js';

/**
 * The real S3 peer of the tests: OpenStack Swift 2.30 with s3api (Debian's python3-swift) on
 * 127.0.0.1:18080, started by test/peers/s3/start-s3.sh (a copy of the shared recipe; see its
 * header). One peer for every test run and engineer on the machine: fixed folder, port and
 * credentials; the script, which is idempotent, only checks that it is up after the first call,
 * and nothing here ever stops it. Tests reach it with requirePeer('s3'); bucket helpers: s3.ts.
 */
export interface S3Peer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export const s3PeerDir = '/tmp/visor-s3peer';
export const s3PeerPort = 18080;

const run = promisify(execFile);
const script = fileURLToPath(new URL('./s3/start-s3.sh', import.meta.url));
const swiftInstalled = () => existsSync('/usr/lib/python3/dist-packages/swift/common/middleware/s3api/s3api.py');

/** Why the peer cannot run on this machine, or undefined when it can (or can be installed). */
async function cannotRun(): Promise<string | undefined> {
  if (swiftInstalled()) return undefined;
  if (!existsSync('/usr/bin/apt-get')) return "needs Debian's python3-swift, and this machine has no apt-get";
  if (process.getuid?.() === 0) return undefined;
  const sudo = await run('sudo', ['-n', 'true']).then(
    () => true,
    () => false,
  );
  return sudo ? undefined : 'needs python3-swift (apt-get install python3-swift), and installing it needs root';
}

async function answers(): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${s3PeerPort}/healthcheck`, {
      signal: AbortSignal.timeout(5000),
      headers: { Connection: 'close' },
    });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

export const s3Peer: PeerDefinition<S3Peer> = {
  title: 'Swift s3api',
  usedBy: 'the S3 store (test/store/s3-store), the Nimbus and Eucalyptus adapters, e2e sync into S3 clouds',
  async start() {
    const reason = await cannotRun();
    if (reason) throw new PeerError('unavailable', reason);
    const reused = await answers();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      S3PEER_PORT: String(s3PeerPort),
      S3PEER_ACCESS_KEY: 'test:tester',
      S3PEER_SECRET_KEY: 'testing',
      S3PEER_REGION: 'us-east-1',
      S3PEER_OBJECT_BACKEND: 'disk',
    };
    delete env['S3PEER_DELETE_MD5_SHIM'];
    delete env['S3PEER_NO_INSTALL'];
    const { stdout } = await run('bash', [script, s3PeerDir], { env, timeout: 600_000, maxBuffer: 1024 * 1024 }).catch(
      async (error: { stderr?: string; message: string }) => {
        throw new PeerError('failed', 'start-s3.sh failed', await startLog(error.stderr || error.message));
      },
    );
    const info = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    const need = (name: string): string => {
      const value = info[name];
      if (!value) throw new PeerError('failed', `start-s3.sh printed no ${name}`, stdout);
      return value;
    };
    const coordinates = {
      endpoint: need('S3_ENDPOINT'),
      accessKeyId: need('S3_ACCESS_KEY'),
      secretAccessKey: need('S3_SECRET_KEY'),
      region: need('S3_REGION'),
    };
    return { coordinates, version: await packageVersions(['python3-swift']), reused };
  },
};
