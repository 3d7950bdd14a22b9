import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { sealingBox } from '../../agent/serve.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { CONTENT_HASH_HEADER, signRequest } from '../../core/auth/signing.js';
import { silentLogger } from '../../core/logging/logger.js';
import { repoRoot, visorBin } from '../support/cli.js';
import { rawRequest } from '../support/raw-http.js';

/**
 * The server's memory does not grow with the uploads it has taken, nor with uploads that stall.
 * A real `visor serve` (the built CLI, its own process) takes 2,000 signed uploads of 1 MiB; its
 * resident memory is sampled as it goes and must stay within a fixed bound of what it was after
 * a warm-up. Then 300 uploads send 2 MiB of their body and stall: they may not pin big buffers.
 * (Before the hashing slots were pooled, 1,000 uploads took the server from 109 to 1,369 MiB,
 * and 300 stalled uploads added 730 MiB.)
 */
const uploads = 2000;
const warmUp = 100;
const size = 1024 * 1024;
const MiB = 1024 * 1024;
/** Growth allowed after the warm-up: heaps and caches settling, not a per-upload cost. */
const growthBound = 128 * MiB;
const stalled = 300;
/** 300 uploads that each sent 2 MiB: 600 MiB passed through (the server took +730 MiB before the fix). */
const stalledBound = 320 * MiB;

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  return port;
}

describe(`visor serve memory: ${uploads} uploads of 1 MiB, then ${stalled} stalled uploads`, () => {
  let dir: string;
  let child: ChildProcess | undefined;
  let url: string;
  let user: NewCredentials;

  const rss = () =>
    Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child!.pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
  const mib = (bytes: number) => `${(bytes / MiB).toFixed(0)} MiB`;
  const storeFiles = async () =>
    (await readdir(join(dir, 'data', 'images')).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));

  beforeAll(async () => {
    if (!existsSync(visorBin)) throw new Error(`${visorBin} is missing: build first (npm run build)`);
    dir = await mkdtemp(join(tmpdir(), 'visor-memory-'));
    const config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      // All uploads come from one address: without the per-address cap (256) all 300 stalled ones get in.
      `dataDir: ${join(dir, 'data')}\nlogging: { level: warn }\n` +
        'server: { host: 127.0.0.1, uploadIdleSeconds: 60, limits: { maxConnectionsPerAddress: 0 } }\n',
    );
    const setup = await openRuntime({ configFile: config, env: {}, logger: silentLogger });
    user = await addUser((await setup.catalog()).users, await sealingBox(setup), 'loader', false);
    await setup.close();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const log = createWriteStream(join(dir, 'serve.log'));
    child = spawn(process.execPath, [visorBin, 'serve', '-c', config, '--port', String(port)], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'], HOME: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (
        await fetch(`${url}/health`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`visor serve did not start: ${await readFile(join(dir, 'serve.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 120_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const body = Buffer.alloc(size, 0x5a);
  const bodySha256 = createHash('sha256').update(body).digest('hex');
  const upload = async (i: number) => {
    const r = await rawRequest(url, {
      method: 'POST',
      path: '/images',
      headers: {
        'content-type': 'application/octet-stream',
        'x-image-meta-name': `m-${i}`,
        'x-image-meta-architecture': 'x86_64',
        'x-image-meta-format': 'raw',
        [CONTENT_HASH_HEADER]: bodySha256,
      },
      body,
      as: user,
    });
    if (r.status !== 201) throw new Error(`upload ${i}: HTTP ${r.status} ${r.body.toString()}`);
  };
  const run = async (from: number, count: number, onProgress: (done: number) => void) => {
    let next = from;
    let done = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < from + count) {
          await upload(next++);
          if (++done % 100 === 0) onProgress(done);
        }
      }),
    );
  };

  it('stays within a fixed bound of its size after a warm-up, whatever the number of uploads', async () => {
    await run(0, warmUp, () => undefined);
    const baseline = rss();
    let peak = baseline;
    const samples: string[] = [];
    await run(warmUp, uploads, (done) => {
      peak = Math.max(peak, rss());
      if (done % 500 === 0) samples.push(`${done}: ${mib(rss())}`);
    });
    console.log(
      `visor serve RSS: ${mib(baseline)} after ${warmUp} uploads, ` +
        `peak ${mib(peak)} over ${uploads} more (${samples.join(', ')})`,
    );
    expect(peak - baseline).toBeLessThan(growthBound);
    expect((await storeFiles()).length).toBe(warmUp + uploads);
  }, 600_000);

  it(`holds no big buffers for ${stalled} uploads that stall midway, and keeps nothing of them`, async () => {
    const before = rss();
    const filesBefore = (await storeFiles()).length;
    const sockets: Socket[] = [];
    const part = Buffer.alloc(2 * MiB, 7);
    const stalledSha256 = createHash('sha256')
      .update(Buffer.alloc(10 * MiB, 7))
      .digest('hex');
    const { hostname, port } = new URL(url);
    for (let i = 0; i < stalled; i++) {
      const headers = signRequest(user.accessKey, user.secretKey, {
        method: 'POST',
        path: '/images',
        query: [],
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(10 * MiB),
          // The sha256 of the 10 MiB it announces (never sent whole).
          [CONTENT_HASH_HEADER]: stalledSha256,
          'x-image-meta-name': `stalled-${i}`,
          'x-image-meta-architecture': 'x86_64',
        },
      });
      const socket = connect(Number(port), hostname);
      socket.on('error', () => undefined);
      socket.write(
        [
          `POST /images HTTP/1.1`,
          `host: ${hostname}`,
          ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
          '',
          '',
        ].join('\r\n'),
      );
      socket.write(part);
      sockets.push(socket);
    }
    // Long enough for every body part to have arrived and half-filled slots to be handed over.
    await new Promise((r) => setTimeout(r, 5000));
    const during = rss();
    console.log(`visor serve RSS: ${mib(before)} before, ${mib(during)} with ${stalled} stalled uploads of 2 MiB each`);
    expect(during - before).toBeLessThan(stalledBound);
    for (const socket of sockets) socket.destroy();
    // Cut off, they leave no bytes and no records; the server goes on serving.
    const records = async () => {
      const list = await rawRequest(url, { method: 'GET', path: '/images', query: [['limit', '10000']], as: user });
      return (list.json() as { images: { name: string }[] }).images.filter((i) => i.name.startsWith('stalled-')).length;
    };
    const deadline = Date.now() + 60_000;
    while (((await storeFiles()).length !== filesBefore || (await records()) > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect((await storeFiles()).length).toBe(filesBefore);
    expect(await records()).toBe(0);
    await upload(uploads + warmUp);
  }, 300_000);
});
