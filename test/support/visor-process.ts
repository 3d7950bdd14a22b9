import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { repoRoot, visorBin } from './cli.js';

/** A `visor serve` or `visor agent` running as its own process, as in a deployment. */
export interface VisorProcess {
  child: ChildProcess;
  url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, and waits for it to end. */
  stop(): Promise<void>;
  /** SIGKILL (kill -9): no clean-up of any kind. */
  kill(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** Starts `visor <command> -c config --port <free>` and waits until it answers HTTP. */
export async function startVisorProcess(
  command: 'serve' | 'agent',
  config: string,
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<VisorProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [visorBin, command, '-c', config, '--port', String(port)], {
    cwd: repoRoot,
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`visor ${command} exited with ${child.exitCode}:\n${output}`);
    const up = await fetch(`${url}/images`, { signal: AbortSignal.timeout(2000) }).then(
      async (r) => {
        await r.body?.cancel();
        return true;
      },
      () => false,
    );
    if (up) break;
    if (Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`visor ${command} did not answer on ${url} within ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    child,
    url,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
