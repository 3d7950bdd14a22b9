import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The path of a module of the build: a source path (ending in .js), resolved under dist/. */
export const builtModule = (path: string): string => fileURLToPath(new URL(`../../dist/${path}`, import.meta.url));

/**
 * Runs `script` (an ES module's text) in a Node process of its own, for at most 20 s: how tests
 * see whether worker threads keep a process alive too long, or too short, once the rest is done.
 */
export function runModuleScript(script: string): SpawnSyncReturns<string> {
  const dir = mkdtempSync(join(tmpdir(), 'visor-script-'));
  try {
    writeFileSync(join(dir, 'script.mjs'), script);
    return spawnSync(process.execPath, [join(dir, 'script.mjs')], { encoding: 'utf8', timeout: 20_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
