import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { craftIso } from '../formats/images.js';
import { runVisorAsync, stackLine, visorBin } from '../support/cli.js';

/** `visor serve` as a user runs it, and VISOR's client verbs against it. */
describe('visor CLI: serve, users and the image verbs', () => {
  let dir: string;
  let server: ChildProcess;
  let url: string;
  let creds: { accessKey: string; secretKey: string };
  let env: Record<string, string>;
  // An ISO 9660 volume of 2 MiB: uploads are inspected, and the content must be what `format=iso` says.
  const image = craftIso({ sectors: 1024, volumeId: 'CENTOS_6_2' });
  const sha256 = createHash('sha256').update(image).digest('hex');

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-cli-'));
    const data = join(dir, 'data');
    const added = await runVisorAsync(['users', 'add', 'alice', '--admin', '--data-dir', data, '--json']);
    expect(added.code).toBe(0);
    creds = JSON.parse(added.stdout) as { accessKey: string; secretKey: string };
    server = spawn(process.execPath, [visorBin, 'serve', '--data-dir', data, '--port', '0'], {
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
    env = { VISOR_URL: url, VISOR_ACCESS_KEY: creds.accessKey, VISOR_SECRET_KEY: creds.secretKey, HOME: dir };
    await writeFile(join(dir, 'disk.img'), image);
  }, 60_000);
  afterAll(async () => {
    server?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  const visor = (args: string[], extraEnv: Record<string, string> = {}) =>
    runVisorAsync(args, { cwd: dir, env: { ...env, ...extraEnv } });

  it('lists users without their secrets', async () => {
    const list = await runVisorAsync(['users', 'list', '--data-dir', join(dir, 'data'), '--json']);
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({ name: 'alice', accessKey: creds.accessKey, admin: true }),
    ]);
    expect(list.stdout).not.toContain(creds.secretKey);
  });

  it('adds, lists, shows, downloads, updates and deletes an image', async () => {
    const add = await visor([
      'add',
      'name=CentOS 6.2',
      'architecture=i386',
      'format=iso',
      'access=private',
      'tags=lts,old',
      'flavour=minimal',
      '--file',
      'disk.img',
      '--json',
    ]);
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    const added = JSON.parse(add.stdout) as Record<string, unknown>;
    expect(added).toMatchObject({
      name: 'CentOS 6.2',
      architecture: 'i386',
      format: 'iso',
      access: 'private',
      status: 'available',
      size: image.length,
      tags: ['lts', 'old'],
      flavour: 'minimal',
    });
    const id = String(added['_id']);

    const brief = await visor(['brief']);
    expect(brief.code).toBe(0);
    expect(brief.stdout.split('\n')[0]).toMatch(/^ID\s+NAME\s+ARCHITECTURE\s+TYPE\s+FORMAT\s+STORE\s+SIZE$/);
    expect(brief.stdout).toContain(id);
    expect(brief.stdout).toContain('2.0 MiB');

    const filtered = await visor(['brief', '--query', 'architecture=x86_64', '--json']);
    expect(JSON.parse(filtered.stdout)).toEqual([]);
    const sorted = await visor(['detail', '--query', 'flavour=minimal', '--sort', 'name', '--dir', 'desc', '--json']);
    expect((JSON.parse(sorted.stdout) as unknown[]).length).toBe(1);

    const searched = await visor(['brief', '--search', 'centos 6', '--json']);
    expect((JSON.parse(searched.stdout) as Record<string, unknown>[]).map((i) => i['_id'])).toEqual([id]);
    const byTag = await visor(['detail', '--search', 'OLD', '--query', 'architecture=i386', '--json']);
    expect((JSON.parse(byTag.stdout) as unknown[]).length).toBe(1);
    const wildcard = await visor(['brief', '--search', 'cent%', '--json']);
    expect(JSON.parse(wildcard.stdout)).toEqual([]);

    const head = await visor(['head', id]);
    expect(head.stdout).toMatch(/^_ID:\s+/m);
    expect(head.stdout).toMatch(/^NAME:\s+CentOS 6\.2$/m);
    expect(head.stdout).toMatch(new RegExp(`^SHA256:\\s+${sha256}$`, 'm'));

    await mkdir(join(dir, 'downloads'));
    const get = await visor(['get', id, '--save', 'downloads']);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/sha256 verified/);
    expect((await readFile(join(dir, 'downloads', 'CentOS_6.2.iso'))).equals(image)).toBe(true);
    const again = await visor(['get', id, '--save', 'downloads']);
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/exists; use --force/);
    const piped = spawnSync(process.execPath, [visorBin, 'get', id, '-o', '-'], {
      cwd: dir,
      env: { PATH: process.env['PATH'], ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(piped.status).toBe(0);
    expect(createHash('sha256').update(piped.stdout).digest('hex')).toBe(sha256);

    const update = await visor(['update', id, 'name=CentOS 6.3', 'flavour=', '--json']);
    expect(JSON.parse(update.stdout)).toMatchObject({ name: 'CentOS 6.3', revision: expect.any(Number) });
    expect(JSON.parse(update.stdout)['flavour']).toBeUndefined();

    const del = await visor(['delete', id]);
    expect(del.stdout).toContain(`Deleted image ${id}`);
    const gone = await visor(['head', id]);
    expect(gone.code).toBe(5);
  });

  it('registers a reference by location and metadata without a file', async () => {
    const add = await visor(['add', 'name=meta only', 'architecture=x86_64', '--json']);
    expect(JSON.parse(add.stdout)).toMatchObject({ status: 'locked' });
  });

  it('reports user mistakes in one line, with a telling exit code and no stack trace', async () => {
    const cases: [string[], Record<string, string>, number, RegExp][] = [
      [['head', '00000000-0000-4000-8000-000000000000'], {}, 5, /no image/],
      [['brief'], { VISOR_SECRET_KEY: 'wrong' }, 4, /signature does not match/],
      [['brief'], { VISOR_ACCESS_KEY: '', VISOR_SECRET_KEY: '' }, 4, /not signed.*VISOR_ACCESS_KEY/],
      [['add', 'name=x'], {}, 2, /architecture/],
      [['add', 'nonsense'], {}, 2, /"nonsense" is not key=value/],
      [['add', 'name=x', 'architecture=x86_64', '--file', 'missing.img'], {}, 2, /missing\.img: no such file/],
      [['brief', '--query', 'sort=bogus field'], {}, 2, /not a valid attribute/],
      [['brief'], { VISOR_URL: 'http://127.0.0.1:1' }, 1, /cannot reach visor at http:\/\/127\.0\.0\.1:1/],
      [['frobnicate'], {}, 2, /unknown command/],
    ];
    for (const [args, extra, code, message] of cases) {
      const result = await visor(args, extra);
      expect(result.code, args.join(' ')).toBe(code);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toMatch(stackLine);
      expect(result.stderr.trim().split('\n').length, result.stderr).toBeLessThanOrEqual(2);
    }
  });

  it('stops gracefully on SIGTERM', async () => {
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('visor help', () => {
  it("lists VISOR's verbs and the service commands", async () => {
    const help = await runVisorAsync(['help']);
    for (const verb of [
      'brief',
      'detail',
      'head',
      'get',
      'add',
      'update',
      'delete',
      'serve',
      'users',
      'plugins',
      'config',
    ])
      expect(help.stdout).toMatch(new RegExp(`^\\s+${verb}\\b`, 'm'));
  });
});
