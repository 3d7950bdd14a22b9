import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/api-server.js';
import { visorBin } from '../support/cli.js';

const MiB = 1024 * 1024;

/**
 * An image whose bytes come from an HTTP location (VISOR's http store) that sends its first
 * MiB and then stalls: a download through visor is reliably mid-transfer when the signal comes.
 */
describe('visor get: Ctrl-C and SIGTERM mid-download', () => {
  let t: TestServer;
  let origin: Server;
  const sockets = new Set<Socket>();
  const data = randomBytes(8 * MiB);
  let id: string;

  beforeAll(async () => {
    t = await startTestServer();
    origin = createServer((request, response) => {
      const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
        response.writeHead(206, {
          'content-length': end - start + 1,
          'content-range': `bytes ${start}-${end}/${data.length}`,
        });
        response.end(data.subarray(start, end + 1));
        return;
      }
      response.writeHead(200, { 'content-length': data.length, 'accept-ranges': 'bytes' });
      if (request.method === 'HEAD') response.end();
      else response.write(data.subarray(0, MiB)); // ... and nothing more.
    });
    origin.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const location = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/disk.raw`;
    const image = await t.client('admin').add({ name: 'stalling', architecture: 'x86_64', format: 'raw', location });
    id = String(image['_id']);
  }, 60_000);
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    origin?.close();
    await t?.close();
  });

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal}: exits ${code} with a clear line and leaves neither the file nor a .part`, async () => {
      const folder = join(t.dataDir, `downloads-${signal}`);
      const { mkdir } = await import('node:fs/promises');
      await mkdir(folder);
      const env = {
        PATH: process.env['PATH'],
        HOME: t.dataDir,
        VISOR_URL: t.url,
        VISOR_ACCESS_KEY: t.users.admin.accessKey,
        VISOR_SECRET_KEY: t.users.admin.secretKey,
      };
      const child = spawn(process.execPath, [visorBin, 'get', id, '--save', folder], { env, cwd: t.dataDir });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      // Mid-transfer: the temporary file holds the first MiB.
      const part = join(folder, '.stalling.raw.part');
      for (let i = 0; i < 300; i++) {
        const size = await stat(part).then(
          (s) => s.size,
          () => 0,
        );
        if (size >= MiB) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await stat(part)).size, stderr).toBe(MiB);
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      expect(await exited, stderr).toBe(code);
      clearTimeout(timer);
      expect(stderr).toContain(`visor: ${signal}: stopping the download of ${id}`);
      expect(stderr).toMatch(new RegExp(`interrupted by ${signal}; nothing partial was left behind`));
      expect(stderr).not.toMatch(/^\s+at\s/m);
      expect(await readdir(folder)).toEqual([]);
    }, 60_000);
  }
});
