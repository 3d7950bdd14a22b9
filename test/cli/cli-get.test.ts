import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVisorAsync, stackLine, visorBin } from '../support/cli.js';

/**
 * `visor get` against a real `visor serve`: the bytes are verified end to end (size and sha256
 * from the catalog), and a download that fails — corrupt or shortened bytes in the store, a
 * missing image, a file in the way — leaves no file of that name and no temporary file.
 */
describe('visor get', () => {
  let dir: string;
  let data: string;
  let server: ChildProcess;
  let env: Record<string, string>;
  const image = randomBytes(3 * 1024 * 1024 + 11);
  const sha256 = createHash('sha256').update(image).digest('hex');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-cli-get-'));
    data = join(dir, 'data');
    const added = await runVisorAsync(['users', 'add', 'alice', '--admin', '--data-dir', data, '--json']);
    const creds = JSON.parse(added.stdout) as { accessKey: string; secretKey: string };
    const serveEnv = { PATH: process.env['PATH'], HOME: dir };
    const serveArgs = [visorBin, 'serve', '--data-dir', data, '--port', '0'];
    server = spawn(process.execPath, serveArgs, { env: serveEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let url = '';
    for await (const line of createInterface({ input: server.stderr! })) {
      const match = /"url":"(http:[^"]+)"/.exec(line);
      if (match) {
        url = match[1]!;
        break;
      }
    }
    server.stderr!.resume();
    env = { VISOR_URL: url, VISOR_ACCESS_KEY: creds.accessKey, VISOR_SECRET_KEY: creds.secretKey, HOME: dir };
    await writeFile(join(dir, 'disk.img'), image);
  }, 60_000);
  afterAll(async () => {
    server?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const visor = (args: string[]) => runVisorAsync(args, { cwd: dir, env });
  const add = async (name: string) => {
    const args = ['add', `name=${name}`, 'architecture=x86_64', 'format=raw', '--file', 'disk.img', '--json'];
    const added = await visor(args);
    expect(added.code, added.stderr).toBe(0);
    return String((JSON.parse(added.stdout) as Record<string, unknown>)['_id']);
  };
  /**
   * Waits until the server has recorded the image's md5 and sha512 (computed after the upload): a
   * stored file damaged before that is found by the server's digest completer, which takes the
   * image out of reach, and `get` would never see the bytes this test means it to check.
   */
  const digested = async (id: string) => {
    for (let i = 0; i < 600; i++) {
      const head = await visor(['head', id, '--json']);
      const meta = JSON.parse(head.stdout) as Record<string, unknown>;
      if (meta['sha512'] !== undefined && meta['checksums_pending'] === undefined) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`the digests of image ${id} were never recorded`);
  };
  /** The stored file of an image (the file store names it after the id). */
  const storedFile = async (id: string) => {
    const names = await readdir(join(data, 'images'));
    return join(data, 'images', names.find((f) => f.startsWith(id))!);
  };
  const leftovers = async () => (await readdir(dir)).filter((f) => f.endsWith('.part'));

  it('saves the file, verified, and refuses to overwrite one without --force', async () => {
    const id = await add('good');
    const got = await visor(['get', id, '-o', 'good.raw', '--json']);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ id, size: image.length, sha256 });
    expect((await readFile(join(dir, 'good.raw'))).equals(image)).toBe(true);

    await writeFile(join(dir, 'good.raw'), 'mine');
    const refused = await visor(['get', id, '-o', 'good.raw']);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(/exists; use --force/);
    expect(await readFile(join(dir, 'good.raw'), 'utf8')).toBe('mine');
    const forced = await visor(['get', id, '-o', 'good.raw', '--force']);
    expect(forced.code).toBe(0);
    expect((await readFile(join(dir, 'good.raw'))).equals(image)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it('fails on bytes that do not match the sha256, keeping no file (and says so on stdout output too)', async () => {
    const id = await add('corrupt');
    await digested(id);
    const file = await storedFile(id);
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([image[1_500_000]! ^ 0xff]), 0, 1, 1_500_000);
    await handle.close();

    const got = await visor(['get', id, '-o', 'corrupt.raw']);
    expect(got.code).toBe(1);
    expect(got.stderr).toMatch(/do not match the image's sha256/);
    expect(got.stderr).not.toMatch(stackLine);
    await expect(readFile(join(dir, 'corrupt.raw'))).rejects.toThrow(/ENOENT/);
    expect(await leftovers()).toEqual([]);

    const pipedEnv = { PATH: process.env['PATH'], ...env };
    const getArgs = [visorBin, 'get', id, '-o', '-'];
    const piped = spawnSync(process.execPath, getArgs, { cwd: dir, env: pipedEnv, maxBuffer: 64 * 1024 * 1024 });
    expect(piped.status).toBe(1);
    expect(piped.stderr.toString()).toMatch(/do not match the image's sha256/);
  });

  it(
    'fails on a stored file shorter than the catalog says ' + '(the server refuses to send it), writing nothing',
    async () => {
      const id = await add('short');
      await digested(id);
      await truncate(await storedFile(id), 1000);
      const got = await visor(['get', id, '-o', 'short.raw']);
      expect(got.code).toBe(1);
      expect(got.stderr).toMatch(/backend answered something visor cannot accept/);
      await expect(readFile(join(dir, 'short.raw'))).rejects.toThrow(/ENOENT/);
      expect(await leftovers()).toEqual([]);
    },
  );

  it('checks the length a server sends against the catalog size it gives, before writing anything', async () => {
    // A server that announces another length than the image's (a broken or lying one).
    const liar = createServer((_request, response) => {
      response.writeHead(200, { 'content-length': '1000', 'x-image-meta-size': '5000', 'x-image-meta-name': 'lie' });
      response.end(Buffer.alloc(1000));
    });
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
      const id = '00000000-0000-4000-8000-000000000001';
      const got = await runVisorAsync(['get', id, '-o', 'lie.raw'], { cwd: dir, env: { ...env, VISOR_URL: url } });
      expect(got.code).toBe(1);
      expect(got.stderr).toMatch(/sends 1000 bytes of image .*, whose catalog size is 5000/);
      await expect(readFile(join(dir, 'lie.raw'))).rejects.toThrow(/ENOENT/);
      expect(await leftovers()).toEqual([]);
    } finally {
      liar.close();
    }
  });

  it('reports a missing image and an unreachable server in one line, writing nothing', async () => {
    const missing = await visor(['get', '00000000-0000-4000-8000-000000000000', '-o', 'missing.raw']);
    expect(missing.code).toBe(5);
    expect(missing.stderr).toMatch(/no image/);
    const unreachable = { cwd: dir, env: { ...env, VISOR_URL: 'http://127.0.0.1:1' } };
    const down = await runVisorAsync(['get', '00000000-0000-4000-8000-000000000000', '-o', 'down.raw'], unreachable);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach visor/);
    expect((await readdir(dir)).filter((f) => /missing|down/.test(f))).toEqual([]);
  });
});
