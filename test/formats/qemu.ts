import { execFileSync } from 'node:child_process';

/**
 * qemu-img's LUKS set-up times PBKDF2 by the thread's CPU time and gives up when a round measures
 * 0 ms ("Unable to get accurate CPU usage"): with tick-based CPU accounting a short round can read
 * 0 on a busy machine. Nothing about the image is wrong then, so set-up tries again.
 */
const cpuTimingGlitch = /Unable to get accurate CPU usage/;
const attempts = 5;

/** Runs qemu-img synchronously (test set-up only); throws with its stderr on failure. */
export function qemuImg(...args: string[]): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? '');
      if (attempt >= attempts || !cpuTimingGlitch.test(stderr)) throw error;
    }
  }
}
