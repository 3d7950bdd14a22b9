import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferReader, detectFormat, inspectImage, openFileReader } from '../../core/formats/index.js';
import type { DiskFormat } from '../../core/image/model.js';
import { convertRaw, craftIso, createImage, mbr, qemuVirtualSize, scratch, writeRawData } from './images.js';
import { requirePeer } from '../peers/index.js';

interface Case {
  name: string;
  format: DiskFormat;
  qemuFormat: string;
  subformat?: string;
  make: (path: string, raw: string) => string | Promise<unknown>;
}

/** One image of every format qemu-img writes, made by qemu-img itself. */
const cases: Case[] = [
  { name: 'raw', format: 'raw', qemuFormat: 'raw', make: (p) => writeRawData(p, 2 * 1024 * 1024) },
  {
    name: 'qcow2 v2 (compat=0.10)',
    format: 'qcow2',
    qemuFormat: 'qcow2',
    subformat: 'compat=0.10',
    make: (p) => createImage(p, 'qcow2', '64M', 'compat=0.10'),
  },
  {
    name: 'qcow2 v3 (compat=1.1) with data',
    format: 'qcow2',
    qemuFormat: 'qcow2',
    subformat: 'compat=1.1',
    make: (p, raw) => convertRaw(raw, p, 'qcow2'),
  },
  {
    name: 'qcow2 v3 with extended L2 and zstd',
    format: 'qcow2',
    qemuFormat: 'qcow2',
    subformat: 'compat=1.1',
    make: (p) => createImage(p, 'qcow2', '1G', 'extended_l2=on,cluster_size=128k,compression_type=zstd'),
  },
  {
    name: 'vmdk monolithicSparse',
    format: 'vmdk',
    qemuFormat: 'vmdk',
    subformat: 'monolithicSparse',
    make: (p) => createImage(p, 'vmdk', '64M'),
  },
  {
    name: 'vmdk streamOptimized with data',
    format: 'vmdk',
    qemuFormat: 'vmdk',
    subformat: 'streamOptimized',
    make: (p, raw) => convertRaw(raw, p, 'vmdk', 'subformat=streamOptimized'),
  },
  {
    name: 'vhd dynamic with data',
    format: 'vhd',
    qemuFormat: 'vpc',
    subformat: 'dynamic',
    make: (p, raw) => convertRaw(raw, p, 'vpc'),
  },
  {
    name: 'vhd fixed',
    format: 'vhd',
    qemuFormat: 'vpc',
    subformat: 'fixed',
    make: (p) => createImage(p, 'vpc', '16M', 'subformat=fixed'),
  },
  {
    name: 'vhd with force_size (current size)',
    format: 'vhd',
    qemuFormat: 'vpc',
    subformat: 'dynamic',
    make: (p) => createImage(p, 'vpc', '100M', 'force_size=on'),
  },
  { name: 'vhdx with data', format: 'vhdx', qemuFormat: 'vhdx', make: (p, raw) => convertRaw(raw, p, 'vhdx') },
  {
    name: 'vdi dynamic',
    format: 'vdi',
    qemuFormat: 'vdi',
    subformat: 'dynamic',
    make: (p) => createImage(p, 'vdi', '64M'),
  },
  {
    name: 'vdi static with data',
    format: 'vdi',
    qemuFormat: 'vdi',
    subformat: 'static',
    make: (p, raw) => convertRaw(raw, p, 'vdi', 'static=on'),
  },
  {
    name: 'ploop (parallels)',
    format: 'ploop',
    qemuFormat: 'parallels',
    make: (p) => createImage(p, 'parallels', '64M'),
  },
];

describe('formats: detection of real images made with qemu-img', () => {
  let skipReason: string | undefined;
  let dir: Awaited<ReturnType<typeof scratch>> | undefined;
  let raw = '';

  beforeAll(async () => {
    skipReason = (await requirePeer('qemu-img')).skip;
    if (skipReason) return;
    dir = await scratch('detect');
    raw = dir.path('data.raw');
    await writeRawData(raw, 3 * 1024 * 1024);
  }, 600_000);
  afterAll(() => dir?.cleanup());

  it.for(cases)('$name: detected with the virtual size qemu-img reports', async (c, ctx) => {
    if (skipReason || !dir) return ctx.skip(skipReason ?? 'no scratch folder');
    const path = dir.path(`${c.name.replace(/\W+/g, '-')}.img`);
    await c.make(path, raw);
    const reader = await openFileReader(path);
    try {
      const detection = await detectFormat(reader);
      expect(detection.format).toBe(c.format);
      expect(detection.matches).toEqual(c.format === 'raw' ? [] : [c.format]);
      const report = await inspectImage(reader, { declared: c.format });
      expect(report.format).toBe(c.format);
      expect(report.containerFormat).toBe('bare');
      if (c.subformat) expect(report.subformat).toBe(c.subformat);
      expect(report.virtualSize).toBe(qemuVirtualSize(path, c.qemuFormat));
      // Headers only: never more than a few hundred KiB, whatever the image's size.
      expect(report.bytesRead).toBeLessThan(c.format === 'raw' ? 4096 : 256 * 1024);
    } finally {
      await reader.close();
    }
  });
});

describe('formats: ISO 9660', () => {
  it('detects a hand-made ISO with its volume size', async () => {
    const iso = craftIso({ sectors: 40 });
    const report = await inspectImage(bufferReader(iso), { declared: 'iso' });
    expect(report).toMatchObject({
      format: 'iso',
      subformat: 'iso9660',
      virtualSize: 40 * 2048,
      details: { volumeId: 'VISOR_TEST' },
    });
    expect(report.partitionTable).toBeUndefined();
  });

  it('accepts a hybrid ISO (MBR or GPT in the system area) as an ISO, as Glance, Nova and Ironic do', async () => {
    for (const [type, table] of [
      [0x17, 'mbr'],
      [0xee, 'gpt'],
    ] as const) {
      const report = await inspectImage(bufferReader(craftIso({ systemArea: mbr(type) })), { declared: 'iso' });
      expect(report).toMatchObject({ format: 'iso', partitionTable: table });
    }
  });

  it('detects ISOs written by genisoimage (plain, and El Torito bootable with Joliet/Rock Ridge)', async (ctx) => {
    const reason = (await requirePeer('genisoimage')).skip;
    if (reason) return ctx.skip(reason);
    const dir = await scratch('iso');
    try {
      await mkdir(dir.path('tree/boot'), { recursive: true });
      await writeFile(dir.path('tree/hello.txt'), 'hello');
      await writeFile(dir.path('tree/boot/boot.img'), Buffer.alloc(2048, 0x90));
      execFileSync('genisoimage', ['-quiet', '-V', 'PLAIN', '-o', dir.path('plain.iso'), dir.path('tree')]);
      execFileSync('genisoimage', [
        '-quiet',
        '-J',
        '-R',
        '-V',
        'BOOTABLE',
        '-b',
        'boot/boot.img',
        '-no-emul-boot',
        '-o',
        dir.path('boot.iso'),
        dir.path('tree'),
      ]);
      for (const [name, label] of [
        ['plain.iso', 'PLAIN'],
        ['boot.iso', 'BOOTABLE'],
      ] as const) {
        const reader = await openFileReader(dir.path(name));
        const report = await inspectImage(reader, { declared: 'iso' }).finally(() => reader.close());
        expect(report).toMatchObject({
          format: 'iso',
          subformat: 'iso9660',
          virtualSize: reader.size,
          details: { volumeId: label },
        });
      }
    } finally {
      await dir.cleanup();
    }
  }, 600_000);
});

describe('formats: raw content', () => {
  it('is raw when no signature matches, with an MBR or GPT reported', async () => {
    const disk = Buffer.alloc(1024 * 1024);
    mbr(0x83).copy(disk);
    const report = await inspectImage(bufferReader(disk), { declared: 'raw' });
    expect(report).toMatchObject({ format: 'raw', virtualSize: disk.length, partitionTable: 'mbr' });
  });

  it('treats AMI machine images as raw disks', async () => {
    const report = await inspectImage(bufferReader(Buffer.alloc(64 * 1024, 7)), { declared: 'ami' });
    expect(report.format).toBe('raw');
  });

  it('refuses an empty image as invalid input', async () => {
    await expect(inspectImage(bufferReader(Buffer.alloc(0)))).rejects.toMatchObject({
      kind: 'invalidInput',
      message: expect.stringContaining('empty'),
    });
  });
});
