import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, describe, expect, it } from 'vitest';
import { OciDriver } from '../../adapters/oci/driver.js';
import { syncTarget } from '../../agent/sync/runner.js';
import { isVisorError } from '../../core/errors.js';
import { newImage } from '../../core/image/image.js';
import { OciSource, type OciSourceOptions } from '../../core/source/oci/oci-source.js';
import { isUnchanged, refusalOf, type SourceSnapshot } from '../../core/source/port.js';
import { putInspected } from '../../core/store/inspected-put.js';
import { sourceContract } from '../../core/testing/source-contract.js';
import { OciClient } from '../../core/wire/oci/client.js';
import { emptyConfig, mediaTypes } from '../../core/wire/oci/media.js';
import { requirePeer } from '../peers/index.js';
import { memorySyncWorld } from '../support/memory-sync.js';
import { sourceKeys, syncSubscription } from '../../agent/sources/importer.js';
import { importHarness } from './support/import-harness.js';

/**
 * The OCI source against a real registry (docker-registry): the source contract over artifacts
 * pushed as `oras push` makes them, the hostile cases as real repositories (unknown media type,
 * an index of two images, an oversized manifest, stored bytes altered), and the round trip:
 * visor A publishes its catalog to the registry, visor B pulls it into its own catalog through
 * the inspected put, byte-identical.
 */
const { peer, skip } = await requirePeer('oci-registry');
const host = () => new URL(peer!.anonymous).host;
const sha = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const clients: OciClient[] = [];
afterAll(async () => {
  for (const c of clients) await c.close();
});

function client(): OciClient {
  const c = new OciClient({ registry: host(), plainHttp: true });
  clients.push(c);
  return c;
}

/** What `oras push --artifact-type application/x-qemu-disk` makes, with EGI's annotations. */
async function orasPush(
  repository: string,
  tag: string,
  layer: Buffer,
  options: { layerType?: string; annotations?: Record<string, string>; layers?: number } = {},
): Promise<string> {
  const c = client();
  const blob = (data: Buffer) => ({ digest: sha(data), size: data.length, open: async () => Readable.from([data]) });
  await c.pushBlob(repository, blob(Buffer.from(emptyConfig.bytes)));
  await c.pushBlob(repository, blob(layer));
  const descriptor = { mediaType: options.layerType ?? mediaTypes.qemuDisk, digest: sha(layer), size: layer.length };
  const manifest = {
    schemaVersion: 2,
    mediaType: mediaTypes.ociManifest,
    artifactType: mediaTypes.qemuDisk,
    config: { mediaType: mediaTypes.empty, digest: emptyConfig.digest, size: 2 },
    layers: Array.from({ length: options.layers ?? 1 }, () => descriptor),
    annotations: {
      'org.opencontainers.image.title': `Image ${tag}`,
      'org.openstack.glance.disk_format': 'raw',
      'org.openstack.glance.os_distro': 'ubuntu',
      'org.openstack.glance.os_version': '22.04',
      'org.openstack.glance.architecture': 'x86_64',
      'eu.egi.cloud.tag': tag,
      ...options.annotations,
    },
  };
  return c.putManifest(repository, tag, Buffer.from(JSON.stringify(manifest)), mediaTypes.ociManifest);
}

const repo = (label: string) => `visor-test/source-${label}-${randomBytes(4).toString('hex')}`;
const source = (repository: string, options: Partial<OciSourceOptions> = {}) =>
  new OciSource({ registry: host(), plainHttp: true, repository, ...options });

const good = repo('good');
const bytes = new Map<string, Buffer>();

sourceContract(
  'oci (docker-registry)',
  async () => {
    for (const tag of ['22.04', '24.04']) {
      const data = randomBytes(20_000 + tag.length);
      bytes.set(`${good}:${tag}`, data);
      await orasPush(good, tag, data);
    }
    const unknownType = repo('tar');
    await orasPush(unknownType, 'v1', randomBytes(100), { layerType: 'application/vnd.oci.image.layer.v1.tar' });
    const twoLayers = repo('two');
    await orasPush(twoLayers, 'v1', randomBytes(100), { layers: 2 });
    const big = repo('big');
    await orasPush(big, 'v1', randomBytes(100), { annotations: { padding: 'x'.repeat(4000) } });
    const index = repo('index');
    const a = await orasPush(index, 'a', randomBytes(50));
    const b = await orasPush(index, 'b', randomBytes(60));
    const entries = [a, b].map((digest) => ({ mediaType: mediaTypes.ociManifest, digest, size: 1 }));
    // Sizes of the real manifests, so that the index is valid for the registry.
    for (const [i, tag] of ['a', 'b'].entries())
      entries[i]!.size = (await client().getManifest(index, tag)).bytes.length;
    const indexBytes = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests: entries }),
    );
    await client().putManifest(index, 'both', indexBytes, mediaTypes.ociIndex);
    return {
      source: async () => source(good),
      expectedBytes: async () => bytes,
      refused: async () => [
        { title: 'an unknown layer media type', source: source(unknownType), reason: 'malformed' as const },
        { title: 'two layers', source: source(twoLayers), reason: 'malformed' as const },
        {
          title: 'a manifest over the cap',
          source: source(big, { maxManifestBytes: 1024 }),
          reason: 'malformed' as const,
        },
        { title: 'an index of two images', source: source(index, { tags: ['both'] }), reason: 'malformed' as const },
        { title: 'a tag that is not there', source: source(good, { tags: ['nope'] }), reason: 'malformed' as const },
      ],
      unreachable: async () => new OciSource({ registry: '127.0.0.1:1', plainHttp: true, repository: 'x/y' }),
    };
  },
  skip,
);

describe('oci source', () => {
  it('maps annotations, follows an index of one image, filters tags, sees a moved tag as new', async (ctx) => {
    if (skip) ctx.skip(skip);
    const repository = repo('map');
    const first = randomBytes(3000);
    const digest = await orasPush(repository, 'ubuntu-22.04', first, {
      annotations: { 'org.openstack.glance.hw_disk_bus': 'scsi' },
    });
    await orasPush(repository, 'other', randomBytes(10));
    const size = (await client().getManifest(repository, digest)).bytes.length;
    const index = {
      schemaVersion: 2,
      mediaType: mediaTypes.ociIndex,
      manifests: [{ mediaType: mediaTypes.ociManifest, digest, size }],
    };
    await client().putManifest(repository, 'ubuntu-index', Buffer.from(JSON.stringify(index)), mediaTypes.ociIndex);

    const s = source(repository, { tagPattern: '^ubuntu-' });
    const listing = (await s.list()) as SourceSnapshot;
    expect(listing.entries.map((e) => e.key)).toEqual([`${repository}:ubuntu-22.04`, `${repository}:ubuntu-index`]);
    const [entry, viaIndex] = listing.entries;
    expect(entry).toMatchObject({
      version: digest,
      name: 'Image ubuntu-22.04',
      size: first.length,
      checksums: { sha256: sha(first).slice(7) },
      diskFormat: 'raw',
      architecture: 'x86_64',
      os: { distro: 'ubuntu', version: '22.04' },
      properties: {
        'oci:tag': 'ubuntu-22.04',
        'oci:org_openstack_glance_hw_disk_bus': 'scsi',
        'oci:eu_egi_cloud_tag': 'ubuntu-22.04',
      },
    });
    expect(viaIndex!.version).toBe(digest);
    expect((await buffer((await s.open(viaIndex!)).stream)).equals(first)).toBe(true);
    expect(isUnchanged(await s.list({ previous: listing.cursor! }))).toBe(true);

    // The tag moves: a new version of the same key, and a new revision of the list.
    const second = randomBytes(4000);
    const moved = await orasPush(repository, 'ubuntu-22.04', second);
    const next = (await s.list({ previous: listing.cursor! })) as SourceSnapshot;
    expect(next.revision).not.toBe(listing.revision);
    expect(next.entries.find((e) => e.key === entry!.key)!.version).toBe(moved);
    // The old version is no longer offered.
    const error = await s.open(entry!).catch((e: unknown) => e);
    expect(isVisorError(error, 'notFound')).toBe(true);
    await s.close();
  });

  it('refuses a layer whose stored bytes were altered, as a digest refusal, while streaming', async (ctx) => {
    if (skip) ctx.skip(skip);
    const repository = repo('altered');
    const data = randomBytes(8192);
    await orasPush(repository, 'v1', data);
    const hex = sha(data).slice(7);
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const file = join(peer!.baseDir, 'anonymous-data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const altered = Buffer.from(data);
    altered[0] = altered[0]! ^ 1;
    await writeFile(file, altered);
    const s = source(repository);
    const listing = (await s.list()) as SourceSnapshot;
    const download = await s.open(listing.entries[0]!);
    const error = await buffer(download.stream).catch((e: unknown) => e);
    expect(refusalOf(error)).toBe('digest');
    await s.close();
  });

  it('takes what visor A publishes into visor B, through the inspected put, byte-identical', async (ctx) => {
    if (skip) ctx.skip(skip);
    const a = await memorySyncWorld();
    const b = await memorySyncWorld();
    try {
      const repository = repo('round-trip');
      const data = randomBytes(150 * 1024);
      const original = await a.addImage('Alma 9', data, { os: { type: 'linux', distro: 'almalinux', version: '9' } });
      const driver = new OciDriver({
        registry: host(),
        plainHttp: true,
        repository,
        access: 'public',
        chunkBytes: 64 * 1024,
      });
      const target = a.target({ retire: { mode: 'delete' } }, { driver }, 'registry');
      expect((await syncTarget(target, a.deps(), { trigger: 'manual' })).status).toBe('succeeded');
      await driver.close();

      const s = source(repository);
      const listing = (await s.list()) as SourceSnapshot;
      expect(listing.entries).toHaveLength(1);
      const entry = listing.entries[0]!;
      const download = await s.open(entry);
      const image = newImage({
        name: entry.name,
        architecture: entry.architecture ?? 'x86_64',
        ...(entry.diskFormat ? { diskFormat: entry.diskFormat } : {}),
        containerFormat: 'bare',
        ...(entry.os ? { os: entry.os } : {}),
        access: 'public',
      });
      const put = await putInspected(b.store, image.id, download.stream, {
        ...(entry.size !== undefined ? { size: entry.size } : {}),
        expected: entry.checksums,
        declared: entry.diskFormat,
      });
      await b.catalog.images.create({
        ...image,
        status: 'available',
        location: { store: 'local', uri: put.uri },
        size: put.size,
        checksums: put.checksums,
      });
      const copy = await b.catalog.images.get(image.id);
      expect(copy).toMatchObject({ name: 'Alma 9', diskFormat: 'raw', os: { distro: 'almalinux', version: '9' } });
      expect(copy.checksums).toEqual(original.checksums);
      const { stream } = await b.store.get(put.uri);
      expect((await buffer(stream)).equals(data)).toBe(true);
      await s.close();
    } finally {
      await a.close();
      await b.close();
    }
  });
  it('is followed by a subscription: imported once, a moved tag replaces and deprecates', async (ctx) => {
    if (skip) ctx.skip(skip);
    const h = await importHarness();
    try {
      const repository = repo('subscribe');
      const first = randomBytes(70_000);
      await orasPush(repository, 'ubuntu-22.04', first);
      await orasPush(repository, 'ignored', randomBytes(100));
      const subscription = { name: 'egi', filters: [] };
      const follow = () => syncSubscription(subscription, source(repository, { tagPattern: '^ubuntu-' }), h.deps);
      const run = await follow();
      expect(run.status).toBe('succeeded');
      expect(run.actions.map((a) => a.result)).toEqual(['imported']);
      const [image] = await h.all();
      expect(image).toMatchObject({
        name: 'Image ubuntu-22.04',
        status: 'available',
        diskFormat: 'raw',
        architecture: 'x86_64',
        os: { distro: 'ubuntu', version: '22.04' },
        size: first.length,
        checksums: { sha256: sha(first).slice(7) },
        properties: { 'oci:tag': 'ubuntu-22.04', [sourceKeys.key]: `${repository}:ubuntu-22.04` },
      });
      // Nothing new: nothing downloaded, nothing imported.
      const again = await follow();
      expect(again.actions.filter((a) => a.result === 'imported')).toEqual([]);
      expect(await h.all()).toHaveLength(1);
      // The tag moves to new bytes: a new version, the old one deprecated (not deleted at once).
      const second = randomBytes(80_000);
      await orasPush(repository, 'ubuntu-22.04', second);
      const moved = await follow();
      expect(moved.status).toBe('succeeded');
      const all = await h.all();
      expect(all).toHaveLength(2);
      const old = all.find((i) => i.id === image!.id)!;
      const next = all.find((i) => i.id !== image!.id)!;
      expect(next.checksums.sha256).toBe(sha(second).slice(7));
      expect(old.properties[sourceKeys.deprecated]).toBeDefined();
    } finally {
      await h.close();
    }
  });
});
