import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'tar-stream';
import { qemuImg } from './qemu.js';

/** A scratch folder for one test file's images. */
export async function scratch(
  prefix: string,
): Promise<{ dir: string; path: (name: string) => string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `visor-formats-${prefix}-`));
  return { dir, path: (name) => join(dir, name), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** `qemu-img create -f <format> [-o options] path size`; returns the path. */
export function createImage(path: string, qemuFormat: string, size: string, options?: string): string {
  qemuImg('create', '-q', '-f', qemuFormat, ...(options ? ['-o', options] : []), path, size);
  return path;
}

/** Random bytes with runs of zeros (so sparse formats have both allocated and empty blocks). */
export async function writeRawData(path: string, size: number): Promise<Buffer> {
  const data = Buffer.alloc(size);
  for (let offset = 0; offset < size; offset += 256 * 1024)
    randomBytes(Math.min(128 * 1024, size - offset)).copy(data, offset);
  await writeFile(path, data);
  return data;
}

/** `qemu-img convert -f raw -O <format> [-o options] raw path`: an image holding known data. */
export function convertRaw(raw: string, path: string, qemuFormat: string, options?: string): string {
  qemuImg('convert', '-f', 'raw', '-O', qemuFormat, ...(options ? ['-o', options] : []), raw, path);
  return path;
}

/** Virtual size as qemu-img reports it, with the format stated (never probed). */
export function qemuVirtualSize(path: string, qemuFormat: string): number {
  return (JSON.parse(qemuImg('info', '--output=json', '-f', qemuFormat, path)) as { 'virtual-size': number })[
    'virtual-size'
  ];
}

/** Overwrites bytes of a file in place. */
export async function patchFile(path: string, offset: number, bytes: Buffer): Promise<void> {
  const data = await readFile(path);
  bytes.copy(data, offset);
  await writeFile(path, data);
}

const sector = 2048;

function bothEndian32(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(value, 0);
  b.writeUInt32BE(value, 4);
  return b;
}

function bothEndian16(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(value, 0);
  b.writeUInt16BE(value, 2);
  return b;
}

function directoryRecord(extent: number, name: number): Buffer {
  const r = Buffer.alloc(34);
  r[0] = 34;
  bothEndian32(extent).copy(r, 2);
  bothEndian32(sector).copy(r, 10);
  r[25] = 2; // directory
  bothEndian16(1).copy(r, 28);
  r[32] = 1;
  r[33] = name;
  return r;
}

/**
 * A minimal valid ISO 9660 volume made by hand: system area, primary volume descriptor at
 * 32 KiB, set terminator, both path tables and an empty root directory. `systemArea` is copied
 * to offset 0 (an MBR for a hybrid ISO, or a smuggled header).
 */
export function craftIso(options: { sectors?: number; systemArea?: Buffer; volumeId?: string } = {}): Buffer {
  const sectors = options.sectors ?? 32;
  const iso = Buffer.alloc(sectors * sector);
  options.systemArea?.copy(iso, 0);
  const pvd = iso.subarray(16 * sector, 17 * sector);
  pvd[0] = 1;
  pvd.write('CD001', 1, 'latin1');
  pvd[6] = 1;
  pvd.write('LINUX'.padEnd(32), 8, 'latin1');
  pvd.write((options.volumeId ?? 'VISOR_TEST').padEnd(32), 40, 'latin1');
  bothEndian32(sectors).copy(pvd, 80);
  bothEndian16(1).copy(pvd, 120);
  bothEndian16(1).copy(pvd, 124);
  bothEndian16(sector).copy(pvd, 128);
  bothEndian32(10).copy(pvd, 132);
  pvd.writeUInt32LE(18, 140);
  pvd.writeUInt32BE(19, 148);
  directoryRecord(20, 0).copy(pvd, 156);
  pvd[881] = 1;
  const terminator = iso.subarray(17 * sector, 18 * sector);
  terminator[0] = 255;
  terminator.write('CD001', 1, 'latin1');
  terminator[6] = 1;
  const pathEntry = (be: boolean) => {
    const e = Buffer.alloc(10);
    e[0] = 1;
    if (be) e.writeUInt32BE(20, 2);
    else e.writeUInt32LE(20, 2);
    if (be) e.writeUInt16BE(1, 6);
    else e.writeUInt16LE(1, 6);
    return e;
  };
  pathEntry(false).copy(iso, 18 * sector);
  pathEntry(true).copy(iso, 19 * sector);
  directoryRecord(20, 0).copy(iso, 20 * sector);
  directoryRecord(20, 1).copy(iso, 20 * sector + 34);
  return iso;
}

/** An MBR with one partition of the given type (0xEE: the protective MBR of a GPT). */
export function mbr(partitionType: number): Buffer {
  const m = Buffer.alloc(512);
  m[446] = 0x80;
  m[446 + 4] = partitionType;
  m.writeUInt32LE(1, 446 + 8);
  m.writeUInt32LE(63, 446 + 12);
  m.writeUInt16LE(0xaa55, 510);
  return m;
}

export interface TarEntry {
  name: string;
  data?: Buffer;
  type?: 'file' | 'symlink' | 'directory';
  linkname?: string;
}

/** A tar archive built with tar-stream, entry names kept exactly as given. */
export async function buildTar(entries: TarEntry[]): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  archive.on('data', (chunk) => chunks.push(chunk as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    archive.on('end', resolve);
    archive.on('error', reject);
  });
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const header = {
        name: entry.name,
        type: entry.type ?? 'file',
        ...(entry.linkname ? { linkname: entry.linkname } : {}),
        size: entry.data?.length ?? 0,
      };
      archive.entry(header, entry.data ?? Buffer.alloc(0), (error) => (error ? reject(error) : resolve()));
    });
  }
  archive.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** An OVF envelope referencing the given files; each `disk` entry also gets a Disk element. */
export function ovfDescriptor(files: { id: string; href: string; disk?: boolean; format?: string }[]): Buffer {
  const refs = files.map((f) => `    <File ovf:id="${f.id}" ovf:href="${f.href}"/>`).join('\n');
  const disks = files
    .filter((f) => f.disk !== false)
    .map(
      (f, i) =>
        `    <Disk ovf:diskId="vmdisk${i + 1}" ovf:fileRef="${f.id}" ovf:capacity="67108864" ` +
        `ovf:format="${f.format ?? 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized'}"/>`,
    )
    .join('\n');
  return Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
${refs}
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
${disks}
  </DiskSection>
  <VirtualSystem ovf:id="vm">
    <Info>A virtual machine</Info>
    <Name>vm</Name>
  </VirtualSystem>
</Envelope>
`);
}
