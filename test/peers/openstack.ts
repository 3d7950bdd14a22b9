import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { missingPackages, packageVersions } from './debian.js';
import { PeerError, startLog, type PeerDefinition } from './peer.js';

/**
 * A real Keystone v3 + Glance v2 from Debian 12 packages on loopback, started by
 * test/peers/openstack/start-openstack.sh (which installs the packages when they are missing).
 * Shared by every test run on the machine: when both services already answer, nothing is
 * started again, and nothing here ever stops them. Tests reach it with requirePeer('openstack').
 */

export interface OpenStackUser {
  username: string;
  password: string;
  projectName: string;
  userDomainName: string;
  projectDomainName: string;
}

export interface OpenStackPeer {
  /** Keystone v3, e.g. http://127.0.0.1:25000/v3 */
  authUrl: string;
  /** Glance (unversioned), e.g. http://127.0.0.1:25001 */
  glanceUrl: string;
  region: string;
  /** Role admin in project admin. */
  admin: OpenStackUser;
  /** Role member (implies reader) in project demo. */
  demo: OpenStackUser;
  baseDir: string;
}

export const openStackBaseDir = '/tmp/visor-openstack';
export const openStackBasePort = 25000;
const packages = ['keystone', 'glance-api', 'python3-openstackclient', 'uwsgi-core', 'uwsgi-plugin-python3', 'curl'];
const script = fileURLToPath(new URL('./openstack/start-openstack.sh', import.meta.url));
const run = promisify(execFile);

export const openStackPeer: PeerDefinition<OpenStackPeer> = {
  title: 'Keystone + Glance',
  usedBy: 'the Glance adapter (test/adapters/glance), e2e, fault, crash and bad-input suites against Glance',
  async start() {
    if (process.platform !== 'linux' || !existsSync('/usr/bin/dpkg-query')) {
      throw new PeerError('unavailable', 'needs a Debian system (Keystone and Glance from Debian packages)');
    }
    const version = () => packageVersions(['keystone', 'glance-api']);
    const running = await readPeer();
    if (running && (await healthy(running))) return { coordinates: running, version: await version(), reused: true };
    const missing = await missingPackages(packages);
    if (missing.length > 0 && process.getuid?.() !== 0) {
      throw new PeerError('unavailable', `needs Debian packages that only root can install: ${missing.join(' ')}`);
    }
    try {
      const options = { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024 };
      await run('bash', [script, openStackBaseDir, String(openStackBasePort)], options);
    } catch (error) {
      const e = error as { stderr?: string; message: string };
      throw new PeerError('failed', 'start-openstack.sh failed', await startLog(e.stderr || e.message));
    }
    const started = await readPeer();
    if (!started) {
      throw new PeerError('failed', `start-openstack.sh succeeded but wrote no ${openStackBaseDir}/env.json`);
    }
    return { coordinates: started, version: await version(), reused: false };
  },
};

/** Environment for Debian's `openstack` CLI as the given user (what admin-openrc.sh sets). */
export function openrc(peer: OpenStackPeer, who: 'admin' | 'demo'): Record<string, string> {
  const user = peer[who];
  return {
    OS_AUTH_URL: peer.authUrl,
    OS_IDENTITY_API_VERSION: '3',
    OS_AUTH_TYPE: 'password',
    OS_USERNAME: user.username,
    OS_PASSWORD: user.password,
    OS_PROJECT_NAME: user.projectName,
    OS_USER_DOMAIN_NAME: user.userDomainName,
    OS_PROJECT_DOMAIN_NAME: user.projectDomainName,
    OS_REGION_NAME: peer.region,
    OS_INTERFACE: 'public',
    OS_IMAGE_API_VERSION: '2',
  };
}

async function readPeer(): Promise<OpenStackPeer | undefined> {
  let env: Record<string, unknown>;
  try {
    env = JSON.parse(await readFile(`${openStackBaseDir}/env.json`, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const user = (u: unknown): OpenStackUser => {
    const v = u as Record<string, string>;
    return {
      username: v['username']!,
      password: v['password']!,
      projectName: v['project_name']!,
      userDomainName: v['user_domain_name']!,
      projectDomainName: v['project_domain_name']!,
    };
  };
  return {
    authUrl: String(env['auth_url']),
    glanceUrl: String(env['image_url']),
    region: String(env['region']),
    admin: user(env['admin']),
    demo: user(env['demo']),
    baseDir: openStackBaseDir,
  };
}

async function healthy(peer: OpenStackPeer): Promise<boolean> {
  const ok = async (url: string) => {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5000), headers: { Connection: 'close' } });
      await response.body?.cancel();
      return response.status === 200;
    } catch {
      return false;
    }
  };
  return (await ok(peer.authUrl)) && (await ok(`${peer.glanceUrl}/healthcheck`));
}
