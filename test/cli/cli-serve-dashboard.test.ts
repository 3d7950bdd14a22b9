import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, visorBin } from '../support/cli.js';

/** The built package serves the dashboard: its assets are part of the build (dist/agent/ui/assets). */
describe('visor serve: the dashboard from the built package', () => {
  let dir: string;
  let server: ChildProcess;
  let url: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-ui-'));
    server = spawn(process.execPath, [visorBin, 'serve', '--data-dir', dir, '--port', '0'], {
      env: { PATH: process.env['PATH'], HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    for await (const line of createInterface({ input: server.stderr! })) {
      const match = /"url":"(http:[^"]+)"/.exec(line);
      if (match) {
        url = match[1]!;
        break;
      }
    }
  }, 60_000);
  afterAll(async () => {
    server?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the page and its assets, unsigned, with the security headers', async () => {
    const page = await fetch(`${url}/ui/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain('/ui/assets/app.js');
    for (const [name, type] of [
      ['app.js', 'text/javascript'],
      ['style.css', 'text/css'],
    ] as const) {
      const asset = await fetch(`${url}/ui/assets/${name}`);
      expect(asset.status, name).toBe(200);
      expect(asset.headers.get('content-type')).toContain(type);
      expect(await asset.text()).toBe(await readFile(join(repoRoot, 'agent/ui/assets', name), 'utf8'));
      const etag = asset.headers.get('etag')!;
      expect((await fetch(`${url}/ui/assets/${name}`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    }
    expect((await fetch(`${url}/ui`, { redirect: 'manual' })).headers.get('location')).toBe('/ui/');
    for (const path of ['/ui/assets/routes.js', '/ui/assets/%2e%2e%2fcredentials.key', '/ui/assets/index.html']) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(404);
    }
    // The API beside it still wants signatures.
    expect((await fetch(`${url}/images`)).status).toBe(401);
    expect(((await (await fetch(`${url}/ui/session`)).json()) as { user: unknown }).user).toBeNull();
  });
});
