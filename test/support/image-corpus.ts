import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ErrorKind } from '../../core/errors.js';
import type { ContainerFormat, DiskFormat } from '../../core/image/model.js';
import { buildTar, craftIso, mbr, ovfDescriptor } from '../formats/images.js';

/**
 * Every class of image the format inspector knows, good and hostile, made with the real
 * qemu-img where the format is qemu's (the `qemu-img` peer: requirePeer('qemu-img') first) and by
 * hand where no tool writes it (ISO system areas, hybrids, smuggled headers, OVAs).
 */
export interface CorpusEntry {
  name: string;
  data: Buffer;
  /** The disk format the uploader declares (undefined: none, visor detects it). */
  declared?: DiskFormat;
  container?: ContainerFormat;
  /** Accepted: the format visor records (declared, else detected). Refused: the kind and the reason. */
  expect: Accepted | Refused;
}

export interface Accepted {
  format: DiskFormat;
  containerFormat?: ContainerFormat;
  virtualSize?: number;
}

export interface Refused {
  kind: ErrorKind;
  reason: RegExp;
}

export function isAccepted(entry: CorpusEntry): entry is CorpusEntry & { expect: Accepted } {
  return 'format' in entry.expect;
}

const fixtures = join(import.meta.dirname, '..', 'formats', 'fixtures');

export async function makeImageCorpus(dir: string): Promise<CorpusEntry[]> {
  const f = (name: string) => join(dir, name);
  const qemu = (...args: string[]) => execFileSync('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const convert = async (format: string, options?: string) => {
    const out = f(`disk.${format}${options ? `-${options.replace(/\W+/g, '-')}` : ''}`);
    qemu('convert', '-f', 'raw', '-O', format, ...(options ? ['-o', options] : []), f('disk.raw'), out);
    return readFile(out);
  };
  const create = async (name: string, ...args: string[]) => {
    qemu('create', '-q', ...args.slice(0, -1), f(name), args[args.length - 1]!);
    return readFile(f(name));
  };

  // 3 MiB of random data with holes: sparse formats get allocated and empty clusters.
  const raw = Buffer.alloc(3 * 1024 * 1024);
  for (let at = 0; at < raw.length; at += 256 * 1024) randomBytes(128 * 1024).copy(raw, at);
  await writeFile(f('disk.raw'), raw);

  const qcow2 = await convert('qcow2');
  const vmdkSparse = await convert('vmdk');
  const vmdkStream = await convert('vmdk', 'subformat=streamOptimized');
  const vhdDynamic = await convert('vpc');
  const vhdFixed = await convert('vpc', 'subformat=fixed');
  const vhdx = await convert('vhdx');
  const vdi = await convert('vdi');
  const ploop = await create('disk.ploop', '-f', 'parallels', '8M');
  // 100 GiB virtual: a 200 KiB block table, far beyond the first 64 KiB.
  const vhdBig = await create('big.vhd', '-f', 'vpc', '100G');
  const backing = await create('backing.qcow2', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', '1M');
  const backingJson = await create(
    'backing-json.qcow2',
    '-f',
    'qcow2',
    '-u',
    '-b',
    'json:{"driver":"file","filename":"/etc/passwd"}',
    '-F',
    'raw',
    '1M',
  );
  const dataFile = await create('datafile.qcow2', '-f', 'qcow2', '-o', `data_file=${f('external.raw')}`, '1M');
  const qed = await create('disk.qed', '-f', 'qed', '8M');
  // A LUKS header by hand: qemu-img's key derivation fails on a loaded machine ("Unable to get
  // accurate CPU usage"), and the magic is all detection looks at.
  const luks = Buffer.alloc(1024 * 1024);
  Buffer.from('LUKS\xba\xbe\x00\x01', 'latin1').copy(luks);
  const descriptor = await readFile(join(fixtures, 'passwd-descriptor.vmdk'));

  const extraExtent = Buffer.from(vmdkSparse);
  rewriteVmdkDescriptor(extraExtent, (text) =>
    text.replace(/(RW \d+ SPARSE "[^"]+")/, '$1\nRW 2 FLAT "/etc/passwd" 0'),
  );
  const differencingVhd = makeDifferencingVhd(await create('diff.vhd', '-f', 'vpc', '8M'));
  const differencingVdi = Buffer.from(vdi);
  differencingVdi.writeUInt32LE(4, 0x4c);

  const iso = craftIso({ sectors: 64 });
  const hybridIso = craftIso({ sectors: 64, systemArea: mbr(0x83) });
  const isoWithQcow2 = craftIso({ sectors: 64, systemArea: qcow2.subarray(0, 32 * 1024) });
  const gptDisk = Buffer.concat([mbr(0xee), raw.subarray(512)]);
  const mbrDisk = Buffer.concat([mbr(0x83), raw.subarray(512)]);
  const qcow2WithVhdFooter = Buffer.concat([qcow2, vhdFixed.subarray(vhdFixed.length - 512)]);
  const truncatedQcow2 = qcow2.subarray(0, 192 * 1024);
  const truncatedVhd = vhdDynamic.subarray(0, Math.floor(vhdDynamic.length / 2));
  const ova = await buildTar([
    { name: 'vm.ovf', data: ovfDescriptor([{ id: 'file1', href: 'disk1.vmdk' }]) },
    { name: 'disk1.vmdk', data: vmdkStream },
  ]);
  const ovaWithBacking = await buildTar([
    {
      name: 'vm.ovf',
      data: ovfDescriptor([
        { id: 'file1', href: 'disk1.qcow2', format: 'http://www.gnome.org/~markmc/qcow-image-format.html' },
      ]),
    },
    { name: 'disk1.qcow2', data: backing },
  ]);

  const lie = (what: string) => new RegExp(`declared ${what}`);
  return [
    { name: 'raw', data: raw, declared: 'raw', expect: { format: 'raw', virtualSize: raw.length } },
    { name: 'raw, format not declared', data: raw, expect: { format: 'raw' } },
    { name: 'raw declared ami', data: raw, declared: 'ami', expect: { format: 'ami' } },
    { name: 'qcow2', data: qcow2, declared: 'qcow2', expect: { format: 'qcow2', virtualSize: raw.length } },
    {
      name: 'qcow2, format not declared',
      data: qcow2,
      expect: { format: 'qcow2', containerFormat: 'bare', virtualSize: raw.length },
    },
    { name: 'VMDK monolithicSparse', data: vmdkSparse, declared: 'vmdk', expect: { format: 'vmdk' } },
    { name: 'VMDK streamOptimized', data: vmdkStream, declared: 'vmdk', expect: { format: 'vmdk' } },
    { name: 'VHD dynamic', data: vhdDynamic, declared: 'vhd', expect: { format: 'vhd' } },
    { name: 'VHD fixed, format not declared', data: vhdFixed, expect: { format: 'vhd' } },
    {
      name: 'VHD of 100 GiB (block table beyond the first 64 KiB)',
      data: vhdBig,
      declared: 'vhd',
      expect: { format: 'vhd' },
    },
    { name: 'VHDX', data: vhdx, declared: 'vhdx', expect: { format: 'vhdx', virtualSize: raw.length } },
    { name: 'VDI', data: vdi, declared: 'vdi', expect: { format: 'vdi' } },
    { name: 'ploop', data: ploop, declared: 'ploop', expect: { format: 'ploop' } },
    { name: 'ISO 9660', data: iso, declared: 'iso', expect: { format: 'iso' } },
    { name: 'hybrid ISO (MBR in its system area)', data: hybridIso, declared: 'iso', expect: { format: 'iso' } },
    { name: 'GPT disk declared raw', data: gptDisk, declared: 'raw', expect: { format: 'raw' } },
    { name: 'MBR disk, format not declared', data: mbrDisk, expect: { format: 'raw' } },
    {
      name: 'OVA holding a streamOptimized VMDK',
      data: ova,
      declared: 'vmdk',
      container: 'ova',
      expect: { format: 'vmdk', containerFormat: 'ova' },
    },
    {
      name: 'qcow2 with a backing file',
      data: backing,
      declared: 'qcow2',
      expect: { kind: 'unsafe', reason: /backing file: "\/etc\/passwd"/ },
    },
    {
      name: 'qcow2 with a json: backing file',
      data: backingJson,
      declared: 'qcow2',
      expect: { kind: 'unsafe', reason: /backing file: "json:/ },
    },
    {
      name: 'qcow2 with an external data file',
      data: dataFile,
      declared: 'qcow2',
      expect: { kind: 'unsafe', reason: /external data file: ".*external\.raw"/ },
    },
    {
      name: 'VMDK descriptor naming /etc/passwd',
      data: descriptor,
      declared: 'vmdk',
      expect: { kind: 'unsafe', reason: /keeps its data in other files: FLAT "\/etc\/passwd"/ },
    },
    {
      name: 'VMDK descriptor declared raw',
      data: descriptor,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: lie('raw, but the content is vmdk') },
    },
    {
      name: 'sparse VMDK whose descriptor names another extent',
      data: extraExtent,
      declared: 'vmdk',
      expect: { kind: 'unsafe', reason: /extents other than the file itself: FLAT "\/etc\/passwd"/ },
    },
    {
      name: 'qcow2 declared raw',
      data: qcow2,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: lie('raw, but the content is qcow2') },
    },
    {
      name: 'qcow2 declared ami',
      data: qcow2,
      declared: 'ami',
      expect: { kind: 'unsafe', reason: lie('ami, but the content is qcow2') },
    },
    {
      name: 'raw declared qcow2',
      data: raw,
      declared: 'qcow2',
      expect: { kind: 'unsafe', reason: lie('qcow2, but the content is raw') },
    },
    {
      name: 'VHD declared raw',
      data: vhdDynamic,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: lie('raw, but the content is vhd') },
    },
    {
      name: 'VHDX declared raw',
      data: vhdx,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: lie('raw, but the content is vhdx') },
    },
    {
      name: 'VDI declared raw',
      data: vdi,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: lie('raw, but the content is vdi') },
    },
    {
      name: 'ISO declared raw',
      data: iso,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: lie('raw, but the content is iso') },
    },
    {
      name: 'ISO that is also a qcow2',
      data: isoWithQcow2,
      declared: 'iso',
      expect: { kind: 'unsafe', reason: /several formats at once \(qcow2, iso\)/ },
    },
    {
      name: 'ISO that is also a qcow2, format not declared',
      data: isoWithQcow2,
      expect: { kind: 'unsafe', reason: /several formats at once \(qcow2, iso\)/ },
    },
    {
      name: 'qcow2 followed by a VHD footer',
      data: qcow2WithVhdFooter,
      declared: 'qcow2',
      expect: { kind: 'unsafe', reason: /several formats at once \(qcow2, vhd\)/ },
    },
    {
      name: 'differencing VHD',
      data: differencingVhd,
      declared: 'vhd',
      expect: { kind: 'unsafe', reason: /differencing VHD depends on a parent disk: "\.\.\/parent\.vhd"/ },
    },
    {
      name: 'differencing VDI',
      data: differencingVdi,
      declared: 'vdi',
      expect: { kind: 'unsafe', reason: /differencing VDI image depends on a parent image/ },
    },
    { name: 'QED', data: qed, expect: { kind: 'unsafe', reason: /QED images are not accepted/ } },
    {
      name: 'LUKS',
      data: luks,
      declared: 'raw',
      expect: { kind: 'unsafe', reason: /LUKS-encrypted images are not accepted/ },
    },
    {
      name: 'OVA holding a qcow2 with a backing file',
      data: ovaWithBacking,
      container: 'ova',
      expect: { kind: 'unsafe', reason: /OVA member "disk1\.qcow2": .*backing file: "\/etc\/passwd"/ },
    },
    {
      name: 'OVA declared bare',
      data: ova,
      declared: 'vmdk',
      expect: { kind: 'unsafe', reason: /content is an OVA archive/ },
    },
    {
      name: 'truncated qcow2',
      data: truncatedQcow2,
      declared: 'qcow2',
      expect: { kind: 'invalidInput', reason: /truncated qcow2 image/ },
    },
    {
      name: 'truncated VHD',
      data: truncatedVhd,
      declared: 'vhd',
      expect: { kind: 'invalidInput', reason: /truncated VHD/ },
    },
  ];
}

/** Rewrites the embedded descriptor of a sparse VMDK in place (same region, NUL-padded). */
function rewriteVmdkDescriptor(data: Buffer, change: (text: string) => string): void {
  const offset = Number(data.readBigUInt64LE(28)) * 512;
  const size = Number(data.readBigUInt64LE(36)) * 512;
  const region = data.subarray(offset, offset + size);
  const nul = region.indexOf(0);
  const text = change(region.subarray(0, nul < 0 ? size : nul).toString('latin1'));
  if (text.length > size) throw new Error('descriptor does not fit');
  region.fill(0);
  region.write(text, 'latin1');
}

/** A dynamic VHD turned into a differencing one whose parent is ../parent.vhd (checksums fixed). */
export function makeDifferencingVhd(vhd: Buffer): Buffer {
  const out = Buffer.from(vhd);
  const dynOffset = Number(out.readBigUInt64BE(16));
  for (const at of [0, out.length - 512]) {
    out.writeUInt32BE(4, at + 60);
    vhdChecksum(out.subarray(at, at + 512), 64);
  }
  const dyn = out.subarray(dynOffset, dynOffset + 1024);
  Buffer.from('../parent.vhd', 'utf16le').swap16().copy(dyn, 64);
  vhdChecksum(dyn, 36);
  return out;
}

function vhdChecksum(block: Buffer, at: number): void {
  block.writeUInt32BE(0, at);
  let sum = 0;
  for (const b of block) sum += b;
  block.writeUInt32BE(~sum >>> 0, at);
}
