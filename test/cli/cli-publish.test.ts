import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { newImage } from '../../core/image/image.js';
import { putInspected } from '../../core/store/inspected-put.js';
import { requirePeer } from '../peers/index.js';
import { runVisorAsync, stackLine } from '../support/cli.js';

/**
 * `visor publish ID oci://HOST/REPO:TAG` as a user runs it, against the real registry (anonymous,
 * htpasswd with a user and password, a docker-style auth file); read back with skopeo and curl.
 */
const registry = await requirePeer('oci-registry');
const skopeo = await requirePeer('skopeo');
const skip = registry.skip ?? skopeo.skip;
const run = promisify(execFile);
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

describe('visor publish', () => {
  let dir: string;
  let id: string;
  const bytes = randomBytes(300 * 1024 + 5);

  beforeAll(async () => {
    if (skip) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-publish-'));
    const runtime = await openRuntime({ dataDir: join(dir, 'data'), env: { HOME: dir } });
    try {
      const deps = await runtime.syncDeps();
      const store = deps.stores.get(deps.defaultStore)!;
      const image = newImage({
        name: 'Debian 12',
        architecture: 'x86_64',
        diskFormat: 'raw',
        containerFormat: 'bare',
        access: 'public',
        os: { type: 'linux', distro: 'debian', version: '12' },
      });
      const put = await putInspected(store, image.id, Readable.from([bytes]), { size: bytes.length, declared: 'raw' });
      await deps.catalog.images.create({
        ...image,
        status: 'available',
        location: { store: deps.defaultStore, uri: put.uri },
        size: put.size,
        checksums: put.checksums,
        uploadedAt: image.createdAt,
      });
      id = image.id;
    } finally {
      await runtime.close();
    }
  }, 60_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const visor = (args: string[], env: Record<string, string> = {}) =>
    runVisorAsync([...args, '--data-dir', join(dir, 'data')], { cwd: dir, env: { HOME: dir, ...env } });

  async function readBack(url: string, repository: string, tag: string, auth: string[] = []) {
    const host = new URL(url).host;
    const ref = `docker://${host}/${repository}:${tag}`;
    const { stdout } = await run(skopeo.peer!.bin, ['inspect', '--raw', '--tls-verify=false', ...auth, ref]);
    const manifest = JSON.parse(stdout) as {
      layers: { digest: string; size: number }[];
      annotations: Record<string, string>;
    };
    expect(manifest.layers).toEqual([
      expect.objectContaining({ digest: `sha256:${sha256(bytes)}`, size: bytes.length }),
    ]);
    expect(manifest.annotations['org.opencontainers.image.title']).toBe('Debian 12');
    expect(manifest.annotations['org.openstack.glance.os_distro']).toBe('debian');
    return manifest;
  }

  it('publishes to an anonymous registry, and curl reads the same bytes back', async (ctx) => {
    if (skip) ctx.skip(skip);
    const url = registry.peer!.anonymous;
    const repository = `visor-test/publish-${randomBytes(3).toString('hex')}`;
    const ref = `oci://${new URL(url).host}/${repository}:12`;
    const result = await visor(['publish', id, ref, '--plain-http', '--access', 'public', '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ reference: ref, tag: '12', image: { size: bytes.length } });
    await readBack(url, repository, '12');
    const { stdout } = await run('curl', ['-sf', `${url}/v2/${repository}/blobs/sha256:${sha256(bytes)}`], {
      encoding: 'buffer',
      maxBuffer: 8 * 1024 * 1024,
    });
    expect(sha256(stdout)).toBe(sha256(bytes));
    // Again: the tag moves to the same content, the blob is not sent twice, the answer is the same.
    const again = await visor(['publish', id, ref, '--plain-http', '--access', 'public']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`sha256:${sha256(bytes)}`);
  });

  it('publishes with a user and password, and with a docker-style auth file; refuses without', async (ctx) => {
    if (skip) ctx.skip(skip);
    const url = registry.peer!.basic;
    const host = new URL(url).host;
    const repository = `visor-test/publish-auth-${randomBytes(3).toString('hex')}`;
    const denied = await visor(['publish', id, `oci://${host}/${repository}:a`, '--plain-http']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/user and password/);
    expect(denied.stderr).not.toMatch(stackLine);
    const withUser = await visor(
      ['publish', id, `oci://${host}/${repository}:a`, '--plain-http', '-u', registry.peer!.user],
      {
        VISOR_OCI_PASSWORD: registry.peer!.password,
      },
    );
    expect(withUser.stderr).toBe('');
    expect(withUser.code).toBe(0);
    const authFile = join(dir, 'auth.json');
    const auth = Buffer.from(`${registry.peer!.user}:${registry.peer!.password}`).toString('base64');
    await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth } } }));
    const withFile = await visor([
      'publish',
      id,
      `oci://${host}/${repository}:b`,
      '--plain-http',
      '--auth-file',
      authFile,
    ]);
    expect(withFile.stderr).toBe('');
    expect(withFile.code).toBe(0);
    const creds = [`--creds=${registry.peer!.user}:${registry.peer!.password}`];
    await readBack(url, repository, 'a', creds);
    await readBack(url, repository, 'b', creds);
  });

  it('publishes over TLS with the registry CA given, and refuses the untrusted certificate without it', async (ctx) => {
    if (skip) ctx.skip(skip);
    const url = registry.peer!.tls;
    const ref = `oci://${new URL(url).host}/visor-test/publish-tls-${randomBytes(3).toString('hex')}:v1`;
    const env = { VISOR_OCI_PASSWORD: registry.peer!.password };
    const user = ['-u', registry.peer!.user];
    const untrusted = await visor(['publish', id, ref, ...user], env);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/not trusted/);
    expect(untrusted.stderr).not.toMatch(stackLine);
    const trusted = await visor(['publish', id, ref, ...user, '--ca-bundle', registry.peer!.caFile, '--json'], env);
    expect(trusted.stderr).toBe('');
    expect(trusted.code).toBe(0);
    expect(JSON.parse(trusted.stdout).image.checksums.sha256).toBe(sha256(bytes));
  });

  it('a second visor follows what the first published (visor sources sync), byte-identical', async (ctx) => {
    if (skip) ctx.skip(skip);
    const host = new URL(registry.peer!.anonymous).host;
    const repository = `visor-test/follow-${randomBytes(3).toString('hex')}`;
    const published = await visor([
      'publish',
      id,
      `oci://${host}/${repository}:12`,
      '--plain-http',
      '--access',
      'public',
    ]);
    expect(published.code).toBe(0);
    const second = join(dir, 'second');
    const config = join(dir, 'second.yaml');
    await writeFile(config, `# the second site\ndataDir: ${second}\n`);
    // `visor subscribe` reads the repository now (a refusal writes nothing), then adds it to the config.
    const subscribe = (...extra: string[]) =>
      runVisorAsync(['subscribe', `oci://${host}/${repository}`, '-c', config, '--name', 'egi', ...extra], {
        cwd: dir,
        env: { HOME: dir },
      });
    const refused = await subscribe('--plain-http', '--tags', '12', '--tag-pattern', '^1');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/--tags or --tag-pattern, not both/);
    const subscribed = await subscribe('--plain-http', '--tags', '12', '--json');
    expect(subscribed.stderr).toBe('');
    expect(JSON.parse(subscribed.stdout)).toMatchObject({ name: 'egi', entries: 1 });
    const written = await readFile(config, 'utf8');
    expect(written).toContain('# the second site');
    expect(written).toMatch(/source: oci/);
    const args = ['--config', config, '--data-dir', second];
    const sync = await runVisorAsync(['sources', 'sync', ...args, '--json'], { cwd: dir, env: { HOME: dir } });
    expect(sync.stderr).toBe('');
    expect(sync.code).toBe(0);
    expect(JSON.parse(sync.stdout).runs[0].actions.map((a: { result: string }) => a.result)).toEqual(['imported']);
    const runtime = await openRuntime({ configFile: config, dataDir: second, env: { HOME: dir } });
    try {
      const deps = await runtime.syncDeps();
      const [copy] = (await deps.catalog.images.list({})).items;
      expect(copy).toMatchObject({ name: 'Debian 12', diskFormat: 'raw', os: { distro: 'debian', version: '12' } });
      expect(copy!.checksums.sha256).toBe(sha256(bytes));
      const { stream } = await deps.stores.get(copy!.location!.store)!.get(copy!.location!.uri);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
    } finally {
      await runtime.close();
    }
    const again = await runVisorAsync(['sources', 'sync', ...args, '--json'], { cwd: dir, env: { HOME: dir } });
    expect(JSON.parse(again.stdout).runs[0].actions).toEqual([]);
  });

  it('refuses bad references and unknown images with one clear line', async (ctx) => {
    if (skip) ctx.skip(skip);
    const host = new URL(registry.peer!.anonymous).host;
    for (const [args, message] of [
      [[id, `oci://${host}/Bad_Repo:x`], /repository name/],
      [[id, `oci://${host}/visor-test/x`], /names no tag/],
      [['00000000-0000-4000-8000-000000000000', `oci://${host}/visor-test/x:y`], /not found|no image/i],
    ] as const) {
      const result = await visor(['publish', ...args, '--plain-http']);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).not.toMatch(stackLine);
    }
  });
});
