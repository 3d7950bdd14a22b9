import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const visorBin = fileURLToPath(new URL('../../dist/bundle/cli.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `visor` executable, as a user would. */
export function runVisor(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; input?: string } = {},
): CliResult {
  const result = spawnSync(process.execPath, [visorBin, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...options.env },
    input: options.input,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export function runVisorAsync(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string | undefined> } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [visorBin, ...args], {
      cwd: options.cwd ?? repoRoot,
      env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A stack trace line, which a user mistake must never print. */
export const stackLine = /^\s+at\s/m;
