import { createHash, randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, describe, expect, it } from 'vitest';
import { isVisorError } from '../../core/errors.js';
import { OciClient, type OciClientOptions } from '../../core/wire/oci/client.js';
import { emptyConfig, mediaTypes } from '../../core/wire/oci/media.js';
import { parseOciReference } from '../../core/wire/oci/reference.js';
import { parseChallenge } from '../../core/wire/oci/auth.js';
import { requirePeer } from '../peers/index.js';

/**
 * The OCI distribution client against a real registry (Debian's docker-registry, distribution
 * 2.8: anonymous, htpasswd Basic, and the Bearer token flow), and against hostile servers for
 * what no honest registry sends (a 2 GiB manifest, an endless tag list, a redirect inward).
 */
const { peer, skip } = await requirePeer('oci-registry');
const clients: OciClient[] = [];
const servers: Server[] = [];
afterAll(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) s.close();
});

const hostOf = (url: string) => new URL(url).host;
function client(url: string, options: Partial<OciClientOptions> = {}): OciClient {
  const c = new OciClient({ registry: hostOf(url), plainHttp: true, ...options });
  clients.push(c);
  return c;
}
const sha = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const source = (data: Buffer, digest = sha(data)) => ({
  digest,
  size: data.length,
  open: async (range?: { start: number; end: number }) =>
    Readable.from([range ? data.subarray(range.start, range.end + 1) : data]),
});
const repo = (label: string) => `visor-test/${label}-${randomBytes(4).toString('hex')}`;

function artifact(layer: Buffer, annotations: Record<string, string> = {}) {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.ociManifest,
      artifactType: mediaTypes.qemuDisk,
      config: { mediaType: mediaTypes.empty, digest: emptyConfig.digest, size: emptyConfig.size },
      layers: [{ mediaType: mediaTypes.qemuDisk, digest: sha(layer), size: layer.length }],
      annotations,
    }),
  );
}

async function pushArtifact(c: OciClient, repository: string, tag: string, layer: Buffer) {
  await c.pushBlob(repository, source(Buffer.from(emptyConfig.bytes)));
  await c.pushBlob(repository, source(layer));
  return c.putManifest(
    repository,
    tag,
    artifact(layer, { 'org.opencontainers.image.title': tag }),
    mediaTypes.ociManifest,
  );
}

async function failure(promise: Promise<unknown>) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isVisorError(error), `expected a VisorError, got ${String(error)}`).toBe(true);
  return error as { kind: string; message: string };
}

describe('oci references and challenges', () => {
  it('parses references and refuses malformed ones', async () => {
    expect(parseOciReference('oci://reg.example:5000/egi/ubuntu:22.04')).toEqual({
      registry: 'reg.example:5000',
      repository: 'egi/ubuntu',
      tag: '22.04',
    });
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(parseOciReference(`oci://r/x@${digest}`).digest).toBe(digest);
    for (const bad of [
      'http://r/x',
      'oci://r',
      'oci://r/UPPER',
      'oci://u:p@r/x',
      'oci://r/x:bad tag',
      'oci://r/x@md5:1',
    ]) {
      expect(() => parseOciReference(bad), bad).toThrow();
    }
    expect(() => parseOciReference('oci://r/x', 'required')).toThrow(/names no tag/);
  });

  it('reads WWW-Authenticate challenges', () => {
    expect(parseChallenge('Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://a/token', service: 'reg', scope: 'repository:x:pull,push' },
    });
    expect(parseChallenge('Basic realm="r"')).toEqual({ scheme: 'basic', params: { realm: 'r' } });
  });
});

describe('oci client against docker-registry', () => {
  it('pushes (monolithic and chunked), reads back byte-identical, lists tags page by page, deletes', async (ctx) => {
    if (skip) ctx.skip(skip);
    const c = client(peer!.anonymous, { chunkBytes: 64 * 1024 });
    const repository = repo('client');
    const small = randomBytes(10_000);
    const large = randomBytes(300_000 + 17);
    expect(await c.pushBlob(repository, source(small))).toBe('uploaded');
    expect(await c.pushBlob(repository, source(small))).toBe('exists');
    let progress = 0;
    expect(await c.pushBlob(repository, source(large), { onProgress: (n) => (progress = n) })).toBe('uploaded');
    expect(progress).toBe(large.length);
    const { stream, size } = await c.getBlob(repository, { digest: sha(large), size: large.length });
    expect(size).toBe(large.length);
    expect(sha(await buffer(stream))).toBe(sha(large));

    const tags = ['t1', 't2', 't3', 't4', 't5'];
    const digests = [];
    for (const tag of tags) digests.push(await pushArtifact(c, repository, tag, tag === 't5' ? large : small));
    expect((await c.listTags(repository, { pageSize: 2 })).sort()).toEqual(tags);
    const manifest = await c.getManifest(repository, 't5');
    expect(manifest.digest).toBe(digests[4]);
    expect(manifest.mediaType).toBe(mediaTypes.ociManifest);
    const parsed = c.parseManifest(manifest, 't5');
    expect('manifest' in parsed && parsed.manifest.layers[0]?.digest).toBe(sha(large));
    expect(await c.headManifest(repository, 't5')).toEqual({ digest: digests[4], size: manifest.bytes.length });
    expect((await c.getManifest(repository, digests[4]!)).bytes.equals(manifest.bytes)).toBe(true);

    // Mounting from another repository of the same registry copies nothing.
    const other = repo('mount');
    expect(await c.pushBlob(other, source(large), { mountFrom: repository })).toBe('mounted');

    await c.deleteManifest(repository, digests[4]!);
    expect(await c.headManifest(repository, 't5')).toBeUndefined();
    expect(await c.listTags(repo('empty'))).toEqual([]);
  });

  it('refuses a source whose bytes do not match their digest, and keeps no blob of it', async (ctx) => {
    if (skip) ctx.skip(skip);
    const data = randomBytes(5000);
    const lie = sha(randomBytes(10));
    for (const chunkBytes of [1 << 20, 1024]) {
      const c = client(peer!.anonymous, { chunkBytes });
      const repository = repo('lie');
      const error = await failure(c.pushBlob(repository, source(data, lie)));
      expect(error.kind).toBe('integrity');
      expect(await c.headBlob(repository, lie)).toBeUndefined();
      expect(await c.headBlob(repository, sha(data))).toBeUndefined();
    }
  });

  it('refuses a blob whose stored bytes were altered, and a size the manifest lies about', async (ctx) => {
    if (skip) ctx.skip(skip);
    const c = client(peer!.anonymous);
    const repository = repo('corrupt');
    const data = randomBytes(4096);
    await c.pushBlob(repository, source(data));
    const lie = await failure(c.getBlob(repository, { digest: sha(data), size: data.length + 1 }));
    expect(lie.kind).toBe('integrity');
    // Flip bytes in the registry's own storage: the registry serves them, the client must not accept them.
    const hex = sha(data).slice(7);
    const file = join(peer!.baseDir, 'anonymous-data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    expect(await readdir(join(file, '..'))).toContain('data');
    const altered = Buffer.from(data);
    altered[100] = altered[100]! ^ 0xff;
    await writeFile(file, altered);
    const { stream } = await c.getBlob(repository, { digest: sha(data), size: data.length });
    const error = await failure(buffer(stream));
    expect(error.kind).toBe('integrity');
  });

  it('refuses a manifest over the size cap unread', async (ctx) => {
    if (skip) ctx.skip(skip);
    const c = client(peer!.anonymous, { maxManifestBytes: 100 });
    const repository = repo('cap');
    await pushArtifact(client(peer!.anonymous), repository, 'big', randomBytes(10));
    const error = await failure(c.getManifest(repository, 'big'));
    expect(error.kind).toBe('tooLarge');
  });

  for (const mode of ['basic', 'token'] as const) {
    it(`authenticates with ${mode === 'basic' ? 'htpasswd (Basic)' : 'the Bearer token flow'}`, async (ctx) => {
      if (skip) ctx.skip(skip);
      const url = peer![mode];
      const repository = repo(mode);
      const anonymous = await failure(client(url).pushBlob(repository, source(randomBytes(10))));
      expect(anonymous.kind).toBe('auth');
      const wrong = client(url, { credentials: { username: peer!.user, password: 'wrong' } });
      const refused = await failure(wrong.listTags(repository));
      expect(refused.kind).toBe('auth');
      expect(refused.message).not.toContain('wrong');
      const c = client(url, { credentials: { username: peer!.user, password: peer!.password }, chunkBytes: 4096 });
      const layer = randomBytes(20_000);
      const digest = await pushArtifact(c, repository, 'v1', layer);
      expect(await c.listTags(repository)).toEqual(['v1']);
      expect((await c.getManifest(repository, 'v1')).digest).toBe(digest);
      const { stream } = await c.getBlob(repository, { digest: sha(layer), size: layer.length });
      expect((await buffer(stream)).equals(layer)).toBe(true);
    });
  }
});

describe('oci client over TLS', () => {
  it('trusts the registry through the CA bundle given, and refuses it (config) without', async (ctx) => {
    if (skip) ctx.skip(skip);
    const { readFile } = await import('node:fs/promises');
    const registry = new URL(peer!.tls).host;
    const credentials = { username: peer!.user, password: peer!.password };
    const untrusted = new OciClient({ registry, credentials });
    clients.push(untrusted);
    const refused = await failure(untrusted.ping());
    expect(refused.kind).toBe('config');
    expect(refused.message).toMatch(/CA/);
    const c = new OciClient({ registry, credentials, caBundle: await readFile(peer!.caFile, 'utf8') });
    clients.push(c);
    const repository = repo('tls');
    const layer = randomBytes(5000);
    await pushArtifact(c, repository, 'v1', layer);
    const { stream } = await c.getBlob(repository, { digest: sha(layer), size: layer.length });
    expect((await buffer(stream)).equals(layer)).toBe(true);
  });
});

/** A server that answers every request with `handler`: the hostile registry no real one is. */
async function hostile(handler: (path: string, res: import('node:http').ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => handler(req.url ?? '/', res));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('oci client against hostile servers', () => {
  it('refuses a 2 GiB manifest without reading it', async () => {
    const url = await hostile((_path, res) => {
      res.writeHead(200, { 'content-type': mediaTypes.ociManifest, 'content-length': String(2 * 1024 ** 3) });
      res.write('{"schemaVersion":2,');
      // Never finishes: the client must stop on the declared length, not wait for 2 GiB.
    });
    const error = await failure(client(url).getManifest('x/y', 'latest'));
    expect(error.kind).toBe('tooLarge');
  });

  it('refuses a manifest that streams past the cap without declaring a length', async () => {
    const url = await hostile((_path, res) => {
      res.writeHead(200, { 'content-type': mediaTypes.ociManifest });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const timer = setInterval(() => (res.destroyed ? clearInterval(timer) : res.write(chunk)), 1);
    });
    const error = await failure(client(url, { maxManifestBytes: 1024 * 1024 }).getManifest('x/y', 'latest'));
    expect(error.kind).toBe('tooLarge');
  });

  it('stops an endless tag list', async () => {
    let n = 0;
    const url = await hostile((_path, res) => {
      n++;
      res.writeHead(200, {
        'content-type': 'application/json',
        link: `</v2/x/y/tags/list?n=2&last=t${n}>; rel="next"`,
      });
      res.end(JSON.stringify({ name: 'x/y', tags: [`t${n}a`, `t${n}b`] }));
    });
    const error = await failure(client(url, { maxTags: 50 }).listTags('x/y', { pageSize: 2 }));
    expect(error.kind).toBe('tooLarge');
    expect(n).toBeLessThan(40);
    // A page that adds nothing and still links further is refused at once.
    const empty = await hostile((_path, res) => {
      res.writeHead(200, { 'content-type': 'application/json', link: '</v2/x/y/tags/list?n=2&last=z>; rel="next"' });
      res.end(JSON.stringify({ name: 'x/y', tags: [] }));
    });
    expect((await failure(client(empty).listTags('x/y'))).kind).toBe('invalidResponse');
  });

  it('lists referrers (the referrers API, by artifact type), and none where a registry lacks it', async (ctx) => {
    const subject = `sha256:${'a'.repeat(64)}`;
    const signature = { mediaType: mediaTypes.ociManifest, digest: `sha256:${'b'.repeat(64)}`, size: 10 };
    const url = await hostile((path, res) => {
      if (path !== `/v2/x/y/referrers/${subject}?artifactType=application%2Fvnd.dev.cosign`) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': mediaTypes.ociIndex });
      res.end(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: mediaTypes.ociIndex,
          manifests: [
            { ...signature, artifactType: 'application/vnd.dev.cosign' },
            { ...signature, artifactType: 'application/spdx+json' },
          ],
        }),
      );
    });
    const found = await client(url).referrers('x/y', subject, 'application/vnd.dev.cosign');
    expect(found).toEqual([{ ...signature, artifactType: 'application/vnd.dev.cosign' }]);
    // distribution 2.8 has no referrers API (404): no referrers, not an error.
    if (skip) ctx.skip(skip);
    const real = client(peer!.anonymous);
    const repository = repo('referrers');
    const digest = await pushArtifact(real, repository, 'v1', randomBytes(10));
    expect(await real.referrers(repository, digest)).toEqual([]);
  });

  it('does not follow a blob redirect to a private address, nor send credentials along', async () => {
    let leaked: string | undefined;
    const inner = createServer((req, res) => {
      leaked = req.headers.authorization;
      res.end('secret');
    });
    servers.push(inner);
    await new Promise<void>((r) => inner.listen(0, '127.0.0.2', r));
    const target = `http://127.0.0.2:${(inner.address() as AddressInfo).port}/metadata`;
    const url = await hostile((_path, res) => res.writeHead(307, { location: target }).end());
    const guarded = client(url, { credentials: { token: 'tok' } });
    const error = await failure(guarded.getBlob('x/y', { digest: sha(Buffer.from('secret')), size: 6 }));
    expect(error.kind).toBe('forbidden');
    expect(leaked).toBeUndefined();
    // Allowed private networks: followed, but still without the registry's credentials.
    const allowed = client(url, { credentials: { token: 'tok' }, allowPrivateNetworks: true });
    const { stream } = await allowed.getBlob('x/y', { digest: sha(Buffer.from('secret')), size: 6 });
    expect((await buffer(stream)).toString()).toBe('secret');
    expect(leaked).toBeUndefined();
  });
});
