import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Caller } from '../../agent/service/access.js';
import type { ImageService } from '../../agent/service/image-service.js';
import type { Catalog } from '../../core/catalog/port.js';
import type { Store } from '../../core/store/port.js';
import { newImage } from '../../core/image/image.js';
import type { DiskFormat, Image, ImageDraft } from '../../core/image/model.js';

/** The agent acting on the catalog (admin). */
export const agentCaller: Caller = { name: 'bad-input', admin: true };

/**
 * Hostile and broken image files, made with the real qemu-img (Debian's qemu-utils) where the
 * attack is a real qemu feature: each is what an uploader could put in the catalog.
 */
export interface BadImageFiles {
  raw: string;
  qcow2: string;
  backing: string;
  dataFile: string;
  vmdkDescriptor: string;
  truncatedQcow2: string;
  truncatedVhd: string;
}

export async function makeBadImages(dir: string): Promise<BadImageFiles> {
  const f = (name: string) => join(dir, name);
  const qemu = (...args: string[]) => execFileSync('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  // Random data with holes, so that sparse formats have allocated and empty clusters.
  const data = Buffer.alloc(2 * 1024 * 1024 + 512);
  for (let at = 0; at < data.length; at += 256 * 1024)
    randomBytes(Math.min(128 * 1024, data.length - at)).copy(data, at);
  await writeFile(f('disk.raw'), data);
  qemu('convert', '-f', 'raw', '-O', 'qcow2', f('disk.raw'), f('disk.qcow2'));
  qemu('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', f('backing.qcow2'), '1M');
  qemu('create', '-q', '-f', 'qcow2', '-o', `data_file=${f('external.raw')}`, f('datafile.qcow2'), '1M');
  await writeFile(
    f('descriptor.vmdk'),
    '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW ' +
      '2048 FLAT "/etc/passwd" 0\n\nddb.virtualHWVersion = "4"\n',
  );
  // A qcow2 cut short: its tables (L1, refcounts) point past the end of what is left.
  qemu('convert', '-f', 'raw', '-O', 'qcow2', f('disk.raw'), f('truncated.qcow2'));
  await truncate(f('truncated.qcow2'), 192 * 1024);
  // A dynamic VHD cut in half: the footer at the end is gone.
  qemu('convert', '-f', 'raw', '-O', 'vpc', f('disk.raw'), f('truncated.vhd'));
  await truncate(f('truncated.vhd'), Math.floor((await stat(f('truncated.vhd'))).size / 2));
  return {
    raw: f('disk.raw'),
    qcow2: f('disk.qcow2'),
    backing: f('backing.qcow2'),
    dataFile: f('datafile.qcow2'),
    vmdkDescriptor: f('descriptor.vmdk'),
    truncatedQcow2: f('truncated.qcow2'),
    truncatedVhd: f('truncated.vhd'),
  };
}

/** Registers and uploads a file as a catalog image (what `visor add` does). */
export async function addImage(
  images: ImageService,
  name: string,
  file: string,
  extra: Partial<Record<string, unknown>> & { diskFormat?: DiskFormat } = {},
): Promise<Image> {
  const image = await images.register(agentCaller, { name, architecture: 'x86_64', access: 'public', ...extra });
  return images.upload(agentCaller, image.id, createReadStream(file), { size: (await stat(file)).size });
}

/** Where `plantImage` writes: a catalog and its stores (a session's deps, a server's parts). */
export interface PlantTarget {
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  defaultStore: string;
}

/**
 * Puts a file into the catalog *without* the upload's inspection: what a catalog written by an
 * older visor holds, or one shared with another service. The agent must still refuse the bad
 * ones before any conversion or cloud upload (defence in depth): these tests prove it does.
 */
export async function plantImage(
  to: PlantTarget,
  name: string,
  file: string,
  extra: Partial<Record<string, unknown>> & { diskFormat?: DiskFormat } = {},
): Promise<Image> {
  const store = to.stores.get(to.defaultStore)!;
  const put = await store.put(`planted-${randomBytes(4).toString('hex')}`, createReadStream(file));
  const draft = { name, architecture: 'x86_64', access: 'public', owner: agentCaller.name, ...extra } as ImageDraft;
  const image = newImage(draft);
  const { size, checksums } = put;
  const location = { store: to.defaultStore, uri: put.uri };
  const uploadedAt = image.createdAt;
  return to.catalog.images.create({ ...image, status: 'available', location, size, checksums, uploadedAt });
}

/** The stored file of a catalog image in a file store. */
export function storedPath(image: Image): string {
  if (!image.location?.uri.startsWith('file:')) throw new Error(`image ${image.id} is not in a file store`);
  return fileURLToPath(image.location.uri);
}

/**
 * A checksum lie: the stored bytes change after the catalog recorded their checksums (bit rot,
 * a tampered store). Same size; `count` bytes flipped near the end, where image data lives.
 */
export async function corruptStored(image: Image, count = 16): Promise<void> {
  const path = storedPath(image);
  const size = (await stat(path)).size;
  const handle = await open(path, 'r+');
  try {
    const at = Math.max(0, size - 4096);
    const bytes = Buffer.alloc(count);
    await handle.read(bytes, 0, count, at);
    for (let i = 0; i < count; i++) bytes[i] = bytes[i]! ^ 0xa5;
    await handle.write(bytes, 0, count, at);
  } finally {
    await handle.close();
  }
}

/** What the agent keeps: stored objects, cached artifacts, the conversion work folder. */
export async function keptState(
  catalog: Catalog,
  storeDir: string,
  cacheDir: string,
): Promise<{ store: string[]; artifacts: string[]; cache: string[] }> {
  const list = async (d: string) => (await readdir(d).catch(() => [] as string[])).sort();
  return {
    store: await list(storeDir),
    artifacts: (await catalog.state.list('artifact:')).map(([key]) => key).sort(),
    cache: await list(cacheDir),
  };
}
