import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sourceKeys, syncSubscription } from '../../agent/sources/importer.js';
import { MemorySource } from '../../core/source/memory-source.js';
import { HepixSource } from '../../core/source/hepix/hepix-source.js';
import { FileServer } from './support/file-server.js';
import { hepixList, inDays } from './support/hepix-fixtures.js';
import { importHarness } from './support/import-harness.js';

const sha = (alg: string, data: Buffer) => createHash(alg).update(data).digest('hex');
const raw = (key: string, version: string, data: Buffer, extra = {}) => ({
  key,
  version,
  name: `${key} ${version}`,
  data,
  diskFormat: 'raw' as const,
  containerFormat: 'bare' as const,
  ...extra,
});

describe('subscription import', () => {
  let h: Awaited<ReturnType<typeof importHarness>>;
  beforeEach(async () => {
    h = await importHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it('imports entries through the inspected upload, with the metadata and the stated digests', async () => {
    const a = randomBytes(300_001);
    const source = new MemorySource([
      raw('a', '1', a, {
        architecture: 'aarch64',
        os: { distro: 'debian', version: '12' },
        properties: { 'hepix:vo': 'vo.test' },
      }),
    ]);
    const run = await syncSubscription({ name: 'sub1' }, source, h.deps);
    expect(run.status).toBe('succeeded');
    expect(run.actions.map((x) => x.result)).toEqual(['imported']);
    const [image] = await h.all();
    expect(image).toMatchObject({
      name: 'a 1',
      status: 'available',
      architecture: 'aarch64',
      diskFormat: 'raw',
      size: a.length,
      os: { distro: 'debian', version: '12' },
      checksums: { sha256: sha('sha256', a), sha512: sha('sha512', a) },
    });
    expect(image!.properties).toMatchObject({
      'hepix:vo': 'vo.test',
      [sourceKeys.subscription]: 'sub1',
      [sourceKeys.key]: 'a',
      [sourceKeys.version]: '1',
    });
    const stored = await h.images.download({ name: 't', admin: true }, image!.id);
    const chunks: Buffer[] = [];
    for await (const c of stored.stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(a)).toBe(true);
    expect((await h.catalog.runs.list({ target: 'source:sub1' }))[0]?.status).toBe('succeeded');
  });

  it('never downloads again what is imported, and keeps nothing of an entry whose bytes lie', async () => {
    const good = randomBytes(50_000);
    const liar = randomBytes(40_000);
    const source = new MemorySource([
      raw('good', '1', good),
      raw('liar', '1', liar, { checksums: { sha512: sha('sha512', Buffer.concat([liar, Buffer.from('x')])) } }),
    ]);
    const first = await syncSubscription({ name: 's' }, source, h.deps);
    expect(first.status).toBe('partial');
    const failed = first.actions.find((x) => x.result === 'failed')!;
    expect(failed.error?.kind).toBe('integrity');
    expect((await h.all()).map((i) => i.properties[sourceKeys.key])).toEqual(['good']);
    expect(await h.storedFiles()).toHaveLength(1);
    const served = source.bytesServed;
    source.set([raw('good', '1', good)]);
    const second = await syncSubscription({ name: 's' }, source, h.deps);
    expect(second.actions.filter((x) => x.action === 'import').map((x) => x.result)).toEqual(['unchanged']);
    expect(source.bytesServed).toBe(served);
  });

  it('a new version replaces the old (deprecated, with a pointer); a removed entry retires per policy', async () => {
    const source = new MemorySource([raw('a', '1', randomBytes(10_000)), raw('b', '1', randomBytes(10_000))]);
    await syncSubscription({ name: 's' }, source, h.deps);
    source.set([raw('a', '2', randomBytes(10_000))]);
    const run = await syncSubscription({ name: 's' }, source, h.deps);
    expect(run.actions.map((x) => `${x.action}:${x.result}`).sort()).toEqual([
      'import:imported',
      'retire:retired',
      'retire:retired',
    ]);
    const images = await h.all();
    const v1 = images.find((i) => i.properties[sourceKeys.key] === 'a' && i.properties[sourceKeys.version] === '1')!;
    const v2 = images.find((i) => i.properties[sourceKeys.key] === 'a' && i.properties[sourceKeys.version] === '2')!;
    const b = images.find((i) => i.properties[sourceKeys.key] === 'b')!;
    expect(v1.properties).toMatchObject({ deprecated: 'true', replacement: v2.id });
    expect(v1.properties['deprecated_reason']).toMatch(/replaced by version 2/);
    expect(b.properties).toMatchObject({ deprecated: 'true', deprecated_reason: 'left the list' });
    expect(v2.properties['deprecated']).toBeUndefined();
    expect(v1.status).toBe('available');
    // The catalog's life cycle follows: deprecated, with the newer version as replacement.
    expect(v1.deprecation).toMatchObject({ state: 'deprecated', replacement: v2.id });
    expect(b.deprecation).toMatchObject({ state: 'deprecated' });
    expect(v2.deprecation).toBeUndefined();

    source.set([raw('a', '2', randomBytes(10_000)), raw('b', '1', randomBytes(10_000))]);
    const back = await syncSubscription({ name: 's' }, source, h.deps);
    expect(back.actions.filter((x) => x.result === 'updated').map((x) => x.detail)).toEqual([
      'b@1: back in the list, no longer deprecated',
    ]);
    expect((await h.catalog.images.get(b.id)).properties['deprecated']).toBeUndefined();
    expect((await h.catalog.images.get(b.id)).deprecation).toBeUndefined();
    source.set([raw('a', '2', randomBytes(10_000))]);
    await syncSubscription({ name: 's' }, source, h.deps);

    source.set([]);
    const deleting = await syncSubscription({ name: 's', retire: 'delete' }, source, h.deps);
    const retired = deleting.actions.filter((x) => x.result === 'retired');
    expect(retired).toHaveLength(1);
    const all = await h.all();
    expect(
      all
        .filter((i) => i.status !== 'deleted')
        .map((i) => i.id)
        .sort(),
    ).toEqual([v1.id, b.id].sort());
    // Deleted softly (lifecycle.softDelete, 7 days by default): restorable, bits kept.
    expect(all.filter((i) => i.status === 'deleted').map((i) => i.id)).toEqual([retired[0]!.imageId]);
  });

  it('retires an imported image when its entry expires, even while the list is unchanged', async () => {
    let now = new Date();
    const source = new MemorySource([
      raw('a', '1', randomBytes(1000), { expiresAt: new Date(now.getTime() + 60_000).toISOString() }),
    ]);
    await syncSubscription({ name: 's' }, source, { ...h.deps, now: () => now });
    now = new Date(now.getTime() + 120_000);
    const run = await syncSubscription({ name: 's' }, source, { ...h.deps, now: () => now });
    expect(run.actions.map((x) => x.result)).toEqual(['retired']);
    expect((await h.all())[0]!.properties['deprecated_reason']).toMatch(/^expired on/);
  });

  it('filters entries (=, !=, ~, !~) and refuses a bad filter with a clear error', async () => {
    const source = new MemorySource([
      raw('ubuntu-22', '1', randomBytes(100), { os: { distro: 'ubuntu', version: '22.04' } }),
      raw('ubuntu-24', '1', randomBytes(100), { os: { distro: 'ubuntu', version: '24.04' } }),
      raw('alma-9', '1', randomBytes(100), { os: { distro: 'almalinux', version: '9' } }),
    ]);
    const run = await syncSubscription({ name: 's', filters: ['os.distro=ubuntu', 'os.version!~^22'] }, source, h.deps);
    expect(run.actions.map((x) => x.detail)).toEqual(['ubuntu-24@1']);
    const bad = await syncSubscription({ name: 't', filters: ['os.distro~(('] }, source, h.deps);
    expect(bad.status).toBe('failed');
    expect(bad.error).toMatch(/not a regular expression/);
  });

  it('a refused list imports nothing and records why', async () => {
    const server = await new FileServer().start();
    try {
      const data = randomBytes(1000);
      server.files.set('/img', data);
      server.files.set(
        '/list',
        hepixList({
          signer: { dn: '/CN=x', caDn: '/CN=y' },
          version: '1',
          images: [{ id: 'i', title: 'i', version: '1', data, url: server.url('/img') }],
        }),
      );
      const source = new HepixSource({ url: server.url('/list'), caFile: '/dev/null', allowPrivateNetworks: true });
      const run = await syncSubscription({ name: 'h' }, source, h.deps);
      expect(run.status).toBe('failed');
      expect(run.error).toMatch(/not signed/);
      expect(await h.all()).toEqual([]);
      expect(server.requests.map((r) => r.path)).toEqual(['/list']);
      await source.close();
    } finally {
      await server.stop();
    }
  });

  it('resumes a download cut off mid-way with a range request, and reads no byte twice', async () => {
    const server = await new FileServer().start();
    try {
      const data = randomBytes(600_000);
      server.files.set('/img', data);
      server.cutAfter.set('/img', 200_000);
      server.files.set(
        '/list',
        hepixList({
          signer: { dn: '/CN=x', caDn: '/CN=y' },
          version: '1',
          expires: inDays(3),
          images: [{ id: 'i', title: 'i', version: '1', data, url: server.url('/img'), format: 'RAW' }],
        }),
      );
      const source = new HepixSource({ url: server.url('/list'), requireSignature: false, allowPrivateNetworks: true });
      const run = await syncSubscription({ name: 'h' }, source, h.deps);
      expect(run.actions.map((x) => x.result)).toEqual(['imported']);
      const ranges = server.requests.filter((r) => r.path === '/img').map((r) => r.range ?? 'all');
      expect(ranges[0]).toBe('all');
      expect(ranges.at(-1)).toMatch(/^bytes=\d+-/);
      expect(Number(/bytes=(\d+)/.exec(ranges.at(-1)!)![1])).toBeGreaterThan(0);
      expect((await h.all())[0]!.checksums.sha512).toBe(sha('sha512', data));
      await source.close();
    } finally {
      await server.stop();
    }
  });
});
