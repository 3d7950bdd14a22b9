import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

/**
 * VISOR_TEST_REQUIRE_PEERS=1 (set by .ci/run) proven on a real, small vitest run in a child
 * process: the project's coordinator and reporter, two fixture files (test/setup/fixtures), and
 * qemu-img made unavailable on purpose by pointing VISOR_TEST_BIN_QEMU_IMG at nothing.
 */

interface ChildRun {
  code: number | null;
  output: string;
}

function fixtureRun(env: Record<string, string>): Promise<ChildRun> {
  const clean: NodeJS.ProcessEnv = {};
  // The child is a run of its own: none of this worker's vitest state, none of the switches under test.
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(VITEST|VISOR_TEST_|VISOR_FIXTURE_|NODE_OPTIONS$|TEST$|FORCE_COLOR$)/.test(k)) clean[k] = v;
  }
  const child = spawn(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/setup/fixtures/vitest.config.ts'],
    {
      cwd: repoRoot,
      env: { ...clean, NO_COLOR: '1', VISOR_TEST_SKIP_BUILD: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => child.on('error', reject).on('close', (code) => resolve({ code, output })));
}

const nowhere = { VISOR_TEST_BIN_QEMU_IMG: '/nonexistent/qemu-img' };

describe('VISOR_TEST_REQUIRE_PEERS=1', { timeout: 120_000 }, () => {
  it('fails a run whose peer cannot run, naming the peer, why, and its start log', async () => {
    const run = await fixtureRun({ ...nowhere, VISOR_TEST_REQUIRE_PEERS: '1' });
    expect(run.code, run.output).toBe(1);
    expect(run.output).toContain(
      'peer "qemu-img" (qemu-img) cannot run here: ' +
        'qemu-img does not run from VISOR_TEST_BIN_QEMU_IMG=/nonexistent/qemu-img',
    );
    expect(run.output).toContain('--- start log of qemu-img ---\nspawn /nonexistent/qemu-img ENOENT');
    expect(run.output).toMatch(/FAIL +test\/setup\/fixtures\/needs-qemu\.fixture\.ts/);
    expect(run.output).toMatch(
      /^ {2}FAIL qemu-img +qemu-img: cannot run here: .*\/nonexistent\/qemu-img \[1 test file\]$/m,
    );
    expect(run.output).toContain('the run FAILS:\n  - peer qemu-img (qemu-img) cannot run here');
  });

  it('without it, the same run passes and reports the test skipped with the reason', async () => {
    const run = await fixtureRun(nowhere);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain(
      '\n  1 skipped: qemu-img cannot run here: ' +
        'qemu-img does not run from VISOR_TEST_BIN_QEMU_IMG=/nonexistent/qemu-img\n',
    );
    expect(run.output).toContain('      - test/setup/fixtures/needs-qemu.fixture.ts > runs qemu-img');
    expect(run.output).not.toContain('the run FAILS');
  });

  it('fails a run with a skip that is not on the allowed list, naming it, though vitest itself passed', async () => {
    const run = await fixtureRun({ VISOR_TEST_REQUIRE_PEERS: '1', VISOR_FIXTURE_STRAY_SKIP: '1' });
    expect(run.code, run.output).toBe(1);
    expect(run.output).toMatch(/Test Files +2 passed/);
    expect(run.output).toMatch(/^ {2}ok {3}qemu-img +qemu-img: ready, .*qemu-img version \d/m);
    expect(run.output).toContain(
      '  1 NOT ALLOWED in CI: skipped for a reason that is not on the allowed list\n' +
        '      - test/setup/fixtures/skips.fixture.ts > skips for a reason not on the allowed list, when asked to',
    );
    expect(run.output).toContain('  1 allowed in CI (capability): the fixture cloud has no paging');
    expect(run.output).toContain('the run FAILS:\n  - 1 skipped test(s) not on the allowed list');
  });

  it('passes a run where every peer ran and every skip is allowed', async () => {
    const run = await fixtureRun({ VISOR_TEST_REQUIRE_PEERS: '1' });
    expect(run.code, run.output).toBe(0);
    expect(run.output).toMatch(/Tests: 2 passed, 0 failed, 1 skipped/);
    expect(run.output).toContain(
      'Required peers (VISOR_TEST_REQUIRE_PEERS=1): every peer ran, and every skip is on the allowed list.',
    );
  });
});
