// The API under many concurrent signed clients: test/load (a real `visor serve`, every request
// signed afresh, every answer checked), run by the bench so that its figures land in BENCHMARKS.md.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function loadFigures({ repoRoot, seconds, connections, log }) {
  const results = join(tmpdir(), `visor-bench-load-${process.pid}.json`);
  rmSync(results, { force: true });
  const env = {
    ...process.env,
    VISOR_TEST_SKIP_BUILD: '1',
    VISOR_LOAD_RESULTS: results,
    VISOR_LOAD_SECONDS: String(seconds),
    VISOR_LOAD_CONNECTIONS: String(connections),
  };
  const vitest = join(repoRoot, 'node_modules/vitest/vitest.mjs');
  const stdio = ['ignore', 'pipe', 'pipe'];
  const child = spawn(process.execPath, [vitest, 'run', 'test/load'], { cwd: repoRoot, env, stdio });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  let figures;
  try {
    figures = JSON.parse(readFileSync(results, 'utf8'));
  } catch {
    log(`  test/load gave no figures (exit ${code}): ${output.slice(-1500)}`);
    return { failed: true, code };
  } finally {
    rmSync(results, { force: true });
  }
  return { ...figures, passed: code === 0 };
}
