import { execFileSync } from 'node:child_process';

/** Runs qemu-img synchronously (test set-up only); throws with its stderr on failure. */
export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
