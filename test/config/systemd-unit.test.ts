import { execFileSync, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { worstCaseStopSeconds } from '../../agent/daemon.js';
import { configFileSchema } from '../../core/config/schema.js';

const unitFile = new URL('../../examples/systemd/visor-agent.service', import.meta.url);
const setting = (unit: string, key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1];

describe('the systemd example unit', () => {
  it('runs visor by a name systemd finds where npm installs it, not a path it may not be at', async () => {
    const unit = await readFile(unitFile, 'utf8');
    const command = setting(unit, 'ExecStart')?.split(' ')[0];
    expect(command).toBe('visor');
    // systemd's own search list for bare names (compiled in); the documented default without systemd-path.
    const found = spawnSync('systemd-path', ['search-binaries-default'], { encoding: 'utf8' });
    const search = (
      found.status === 0 ? found.stdout.trim() : '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin'
    ).split(':');
    const prefix = execFileSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).trim();
    expect(search).toContain(join(prefix, 'bin'));
    expect(search).toContain('/usr/local/bin');
  });

  it("waits longer than the agent's worst-case stop with the default grace period", async () => {
    const unit = await readFile(unitFile, 'utf8');
    const grace = configFileSchema.parse({}).agent.stopGraceSeconds;
    const worst = worstCaseStopSeconds(grace);
    expect(unit).toContain(`agent.stopGraceSeconds (${grace})`);
    expect(unit).toMatch(new RegExp(`=\\s*(#\\s*)?${worst} s`));
    expect(Number(setting(unit, 'TimeoutStopSec'))).toBeGreaterThanOrEqual(worst + 15);
  });
});
