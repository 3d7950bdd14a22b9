import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { OciDriver } from '../../../adapters/oci/driver.js';
import { tagFor } from '../../../adapters/oci/mapper.js';
import { syncTarget } from '../../../agent/sync/runner.js';
import { isVisorError } from '../../../core/errors.js';
import { putInspected } from '../../../core/store/inspected-put.js';
import { memorySyncWorld, type MemorySyncWorld } from '../../support/memory-sync.js';
import { requirePeer } from '../../peers/index.js';

/**
 * A registry as a sync target, end to end: the agent's runner, planner and executor publish the
 * catalog (real SQLite catalog and file store) to a real docker-registry as ORAS-style artifacts,
 * and keep it in step — new image, new content, new metadata, retired image. What the registry
 * holds is read back by independent clients: skopeo (the manifest) and curl (the blob), and the
 * digests compared.
 */
const registry = await requirePeer('oci-registry');
const skopeo = await requirePeer('skopeo');
const skip = registry.skip ?? skopeo.skip;
const run = promisify(execFile);

let world: MemorySyncWorld | undefined;
const drivers: OciDriver[] = [];
afterEach(async () => {
  await world?.close();
  world = undefined;
  for (const d of drivers.splice(0)) await d.close();
});

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const results = (actions: readonly { action: string; result: string }[]) =>
  actions.map((a) => `${a.action}:${a.result}`).sort();

function ociTarget(w: MemorySyncWorld, repository: string, access: 'public' | 'private' = 'public') {
  const driver = new OciDriver({
    registry: new URL(registry.peer!.anonymous).host,
    plainHttp: true,
    repository,
    access,
    chunkBytes: 32 * 1024,
  });
  drivers.push(driver);
  return w.target({ retire: { mode: 'delete' } }, { driver }, 'registry');
}

async function skopeoManifest(repository: string, tag: string): Promise<string> {
  const host = new URL(registry.peer!.anonymous).host;
  const ref = `docker://${host}/${repository}:${tag}`;
  const { stdout } = await run(skopeo.peer!.bin, ['inspect', '--raw', '--tls-verify=false', ref], { timeout: 60_000 });
  return stdout;
}

async function curl(url: string): Promise<Buffer> {
  const { stdout } = await run('curl', ['-sf', url], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

describe('an OCI registry as a sync target', () => {
  it('publishes new images, new content and new metadata, retires, and skopeo and curl read it back', async (ctx) => {
    if (skip) ctx.skip(skip);
    world = await memorySyncWorld();
    const repository = `visor-test/sync-${randomBytes(4).toString('hex')}`;
    const bytes = randomBytes(100 * 1024 + 3);
    const alpha = await world.addImage('Ubuntu 22.04', bytes, {
      os: { type: 'linux', distro: 'ubuntu', version: '22.04' },
      tags: ['egi'],
      properties: { hw_disk_bus: 'virtio' },
      minRam: 512,
    });
    await world.addImage('beta', randomBytes(2048));
    const target = ociTarget(world, repository);

    const first = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(first).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(results(first.actions)).toEqual(['create:created', 'create:created']);

    // skopeo: the manifest as the registry serves it, with the ORAS layout and visor's annotations.
    const tag = tagFor({ id: alpha.id, name: 'Ubuntu 22.04' });
    const raw = await skopeoManifest(repository, tag);
    const manifest = JSON.parse(raw) as {
      artifactType: string;
      config: { mediaType: string; size: number };
      layers: { mediaType: string; digest: string; size: number }[];
      annotations: Record<string, string>;
    };
    expect(manifest.artifactType).toBe('application/x-qemu-disk');
    expect(manifest.config).toMatchObject({ mediaType: 'application/vnd.oci.empty.v1+json', size: 2 });
    expect(manifest.layers).toEqual([
      expect.objectContaining({
        mediaType: 'application/x-qemu-disk',
        digest: `sha256:${sha256(bytes)}`,
        size: bytes.length,
      }),
    ]);
    expect(manifest.annotations).toMatchObject({
      'org.opencontainers.image.title': 'Ubuntu 22.04',
      'org.openstack.glance.disk_format': 'raw',
      'org.openstack.glance.os_distro': 'ubuntu',
      'org.openstack.glance.os_version': '22.04',
      'org.openstack.glance.architecture': 'x86_64',
      'org.openstack.glance.hw_disk_bus': 'virtio',
      'org.openstack.glance.min_ram': '512',
      'org.visor.image-id': alpha.id,
      'org.visor.sha256': sha256(bytes),
    });
    // curl: the manifest's digest as the registry names it, and the blob's bytes.
    const base = `${registry.peer!.anonymous}/v2/${repository}`;
    const { stdout: head } = await run('curl', [
      '-sfI',
      '-H',
      'Accept: application/vnd.oci.image.manifest.v1+json',
      `${base}/manifests/${tag}`,
    ]);
    expect(head.toLowerCase()).toContain(`docker-content-digest: sha256:${sha256(raw)}`);
    expect(sha256(await curl(`${base}/blobs/sha256:${sha256(bytes)}`))).toBe(sha256(bytes));

    const again = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(again).toMatchObject({ status: 'succeeded', actions: [], drift: 0 });

    // New metadata: a new manifest under the same tag, the layer not sent again.
    const renamed = await world.catalog.images.update(alpha.id, alpha.revision, { minRam: 1024 });
    const updated = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(results(updated.actions)).toEqual(['update:updated']);
    expect(JSON.parse(await skopeoManifest(repository, tag)).annotations).toMatchObject({
      'org.openstack.glance.min_ram': '1024',
      'org.visor.revision': String(renamed.revision),
    });

    // New content: replaced, and the old manifest deleted.
    const next = randomBytes(50 * 1024);
    const stored = await putInspected(world.store, `${alpha.id}-2`, Readable.from([next]), {
      size: next.length,
      declared: 'raw',
    });
    await world.catalog.images.update(alpha.id, renamed.revision, {
      location: { store: 'local', uri: stored.uri },
      size: stored.size,
      checksums: stored.checksums,
    });
    const replaced = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(replaced.status).toBe('succeeded');
    const now = await target.driver.list();
    const copies = now.filter((c) => c.markers?.imageId === alpha.id);
    expect(copies).toHaveLength(1);
    expect(copies[0]!.checksums.sha256).toBe(sha256(next));
    const layer = JSON.parse(await skopeoManifest(repository, copies[0]!.nativeId)).layers[0];
    expect(layer.digest).toBe(`sha256:${sha256(next)}`);

    // Retire: no longer selected (made private), its manifest deleted from the registry.
    const current = (await world.catalog.images.get(alpha.id))!;
    await world.catalog.images.update(alpha.id, current.revision, { access: 'private' });
    const retired = await syncTarget(target, world.deps(), { trigger: 'manual' });
    expect(results(retired.actions)).toEqual(['retire:retired']);
    expect((await target.driver.list()).some((c) => c.markers?.imageId === alpha.id)).toBe(false);
    const gone = await run(skopeo.peer!.bin, [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${new URL(registry.peer!.anonymous).host}/${repository}:${copies[0]!.nativeId}`,
    ]).then(
      () => 'found',
      () => 'gone',
    );
    expect(gone).toBe('gone');
  });

  it('never publishes a private image to a public repository', async (ctx) => {
    if (skip) ctx.skip(skip);
    world = await memorySyncWorld();
    const repository = `visor-test/private-${randomBytes(4).toString('hex')}`;
    await world.addImage('secret', randomBytes(4096), { access: 'private' });
    const target = ociTarget(world, repository, 'public');
    // Even selected, it is not copied: the public repository is the only level there, and access is
    // never widened (the planner leaves it out, with a warning). The driver refuses it too (below).
    const policy = { ...target.policy, selector: { ...target.policy.selector, access: ['private' as const] } };
    const result = await syncTarget({ ...target, policy }, world.deps(), { trigger: 'manual' });
    expect(results(result.actions)).toEqual([]);
    expect(await target.driver.list()).toEqual([]);
    const image = (await world.catalog.images.list({})).items[0]!;
    const error = await (target.driver as OciDriver)
      .create({
        image,
        markers: { agent: 'a', target: 'registry', imageId: image.id, sha256: image.checksums.sha256!, revision: 1 },
        content: {
          size: 1,
          checksums: { md5: '', sha256: '', sha512: '' },
          diskFormat: 'raw',
          containerFormat: 'bare',
          open: async () => Readable.from([]),
        },
        timeoutMs: 10_000,
      })
      .catch((e: unknown) => e);
    expect(isVisorError(error, 'unsupported')).toBe(true);
  });
});
