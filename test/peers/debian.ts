import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { PeerError, tail } from './peer.js';

/** Debian packages of the peers: which are missing, installing them, their versions. */

const run = promisify(execFile);

export async function packageVersion(pkg: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg]);
    const [status, version] = stdout.split('\t');
    return status?.includes('install ok installed') ? version : undefined;
  } catch {
    return undefined;
  }
}

/** "keystone 2:22.0.2-0+deb12u3, glance-api 2:25.1.0-2+deb12u3" */
export async function packageVersions(packages: readonly string[]): Promise<string> {
  const versions = await Promise.all(
    packages.map(async (p) => `${p} ${(await packageVersion(p)) ?? '(not installed)'}`),
  );
  return versions.join(', ');
}

export async function missingPackages(packages: readonly string[]): Promise<string[]> {
  const versions = await Promise.all(packages.map((p) => packageVersion(p)));
  return packages.filter((_, i) => versions[i] === undefined);
}

/**
 * Installs what is missing of `packages` with apt-get (as root, or through passwordless sudo),
 * waiting for the dpkg lock other test runs on the machine may hold. Throws `unavailable` when
 * this machine cannot install them, `failed` when apt-get itself fails.
 */
export async function ensurePackages(packages: readonly string[]): Promise<void> {
  const missing = await missingPackages(packages);
  if (missing.length === 0) return;
  if (!existsSync('/usr/bin/apt-get'))
    throw new PeerError('unavailable', `needs Debian packages (${missing.join(' ')}) and this machine has no apt-get`);
  const root = process.getuid?.() === 0;
  const sudo =
    !root &&
    (await run('sudo', ['-n', 'true']).then(
      () => true,
      () => false,
    ));
  if (!root && !sudo)
    throw new PeerError(
      'unavailable',
      `needs Debian packages that only root can install: apt-get install ${missing.join(' ')}`,
    );
  const apt = (args: string[]) => {
    const command = [...(sudo ? ['sudo', '-n'] : []), 'apt-get', '-q', '-o', 'DPkg::Lock::Timeout=600', ...args];
    return run(command[0]!, command.slice(1), {
      timeout: 900_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  };
  const install = ['install', '-y', '--no-install-recommends', ...missing];
  try {
    await apt(install).catch(async () => {
      await apt(['update']);
      await apt(install);
    });
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new PeerError(
      'failed',
      `apt-get install ${missing.join(' ')} failed`,
      tail(`${e.stdout ?? ''}\n${e.stderr ?? e.message}`, 30),
    );
  }
}
