import { execFileSync, spawnSync } from 'node:child_process';

/**
 * Makes sure qemu-img (Debian's qemu-utils) is installed, installing it when missing and we are
 * root (or have passwordless sudo). Idempotent: a no-op when qemu-img runs. Returns undefined
 * when qemu-img is usable, else the reason to skip the tests that need it.
 */
export function ensureQemuImg(): string | undefined {
  return ensureDebianTool('qemu-img', 'qemu-utils');
}

/** genisoimage (Debian's genisoimage), to check detection against ISOs a real tool wrote. */
export function ensureGenisoimage(): string | undefined {
  return ensureDebianTool('genisoimage', 'genisoimage');
}

function ensureDebianTool(tool: string, pkg: string): string | undefined {
  if (runs(tool)) return undefined;
  const root = process.getuid?.() === 0;
  const sudo = !root && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
  if (!root && !sudo) return `${tool} is not installed and installing ${pkg} needs root (apt-get install ${pkg})`;
  const prefix = sudo ? ['sudo', '-n'] : [];
  const apt = (args: string[]) => {
    const [cmd, ...rest] = [...prefix, 'apt-get', ...args];
    execFileSync(cmd!, rest, { stdio: 'ignore', timeout: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  const install = ['install', '-y', '-q', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=600', pkg];
  try {
    apt(install);
  } catch {
    try {
      apt(['update', '-q', '-o', 'DPkg::Lock::Timeout=600']);
      apt(install);
    } catch (error) {
      return `${tool} is not installed and apt-get install ${pkg} failed: ${(error as Error).message.split('\n')[0]}`;
    }
  }
  return runs(tool) ? undefined : `${pkg} was installed but ${tool} does not run`;
}

function runs(tool: string): boolean {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Runs qemu-img synchronously (test set-up only); throws with its stderr on failure. */
export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
