import { readExact, u64, type ImageReader } from './reader.js';
import { startsWith, type ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';

/*
 * Microsoft VHD (qemu's "vpc"). A big-endian 512-byte footer "conectix" ends the file; dynamic
 * and differencing disks also copy it to offset 0 (qemu reads that copy first).
 *   8 features · 12 version · 16 data offset u64 (dynamic header) · 28 creator app
 *   40 original size u64 · 48 current size u64 · 56 cylinders u16 · 58 heads · 59 sectors
 *   60 disk type (2 fixed, 3 dynamic, 4 differencing) · 64 checksum
 * Dynamic header "cxsparse": 16 BAT offset u64 · 28 BAT entries · 32 block size
 * · 64 parent name (UTF-16BE, 512 bytes).
 */
const diskTypes: Record<number, string> = { 2: 'fixed', 3: 'dynamic', 4: 'differencing' };
/** Creator apps whose size is the footer's current size rather than its CHS geometry (qemu's vpc.c). */
const currentSizeCreators = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0'];
const maxChsSectors = 65535 * 16 * 255;
/** A BAT is 4 bytes per block: 4 MiB covers 2 TiB (the VHD maximum) with 2 MiB blocks. */
const maxBatBytes = 4 * 1024 * 1024;

export function probeVhd(input: ProbeInput): boolean {
  return startsWith(input.head, 'conectix') || startsWith(input.tail, 'conectix');
}

export async function parseVhd(reader: ImageReader, input: ProbeInput): Promise<FormatFacts> {
  const problems: Problem[] = [];
  const headCopy = startsWith(input.head, 'conectix');
  const tailFooter = startsWith(input.tail, 'conectix');
  if (headCopy && !tailFooter) {
    problems.push({ kind: 'invalidInput', reason: 'truncated VHD: the footer at the end of the file is missing' });
  }
  const footer = headCopy ? input.head : input.tail;
  if (footer.length < 512) return { details: {}, problems: [{ kind: 'invalidInput', reason: 'truncated VHD footer' }] };
  if (!checksumOk(footer, 64, 512)) problems.push({ kind: 'invalidInput', reason: 'VHD footer checksum mismatch' });
  const typeCode = footer.readUInt32BE(60);
  const type = diskTypes[typeCode];
  if (type === undefined)
    return {
      details: {},
      problems: [...problems, { kind: 'invalidInput', reason: `unknown VHD disk type ${typeCode}` }],
    };
  if (type !== 'fixed' && !headCopy)
    problems.push({
      kind: 'invalidInput',
      reason: `truncated VHD: the ${type} disk's copy of the footer at offset 0 is missing`,
    });

  const virtualSize = vhdVirtualSize(footer);
  const details: FormatFacts['details'] = { creator: footer.subarray(28, 32).toString('latin1').replace(/\0/g, '') };

  if (type === 'fixed') {
    if (headCopy) problems.push({ kind: 'invalidInput', reason: 'fixed VHD with a footer copy at offset 0' });
    if (reader.size - 512 < virtualSize)
      problems.push({
        kind: 'invalidInput',
        reason:
          `truncated VHD: a fixed disk of ${virtualSize} bytes ` +
          `needs ${virtualSize + 512} bytes, the file has ${reader.size}`,
      });
    return { virtualSize, subformat: type, details, problems };
  }

  const dynOffset = u64(footer, 16, 'be');
  const dyn = await readExact(reader, dynOffset, 1024, 'VHD dynamic disk header');
  if (!startsWith(dyn, 'cxsparse'))
    return {
      virtualSize,
      subformat: type,
      details,
      problems: [
        ...problems,
        { kind: 'invalidInput', reason: 'VHD dynamic disk header signature "cxsparse" not found' },
      ],
    };
  if (!checksumOk(dyn, 36, 1024))
    problems.push({ kind: 'invalidInput', reason: 'VHD dynamic disk header checksum mismatch' });
  if (type === 'differencing') {
    // A differencing disk reads its unallocated blocks from a parent file: a backing file.
    const parent = Buffer.from(dyn.subarray(64, 576)).swap16().toString('utf16le').replace(/\0+$/, '');
    problems.push({
      kind: 'unsafe',
      reason: `differencing VHD depends on a parent disk${parent ? `: ${JSON.stringify(parent)}` : ''}`,
    });
  }
  const batOffset = u64(dyn, 16, 'be');
  const entries = dyn.readUInt32BE(28);
  const blockSize = dyn.readUInt32BE(32);
  if (blockSize < 512 || (blockSize & (blockSize - 1)) !== 0)
    return {
      virtualSize,
      subformat: type,
      details,
      problems: [...problems, { kind: 'invalidInput', reason: `invalid VHD block size ${blockSize}` }],
    };
  if (entries * blockSize < virtualSize)
    problems.push({
      kind: 'invalidInput',
      reason: `VHD block table covers ${entries * blockSize} bytes, less than the disk's ${virtualSize}`,
    });
  const dataEnd = reader.size - 512;
  if (batOffset + entries * 4 > dataEnd) {
    problems.push({
      kind: 'invalidInput',
      reason:
        `truncated VHD: its block table (${entries * 4} bytes at ` +
        `offset ${batOffset}) lies beyond the end of the data`,
    });
  } else if (entries * 4 <= maxBatBytes) {
    // qemu refuses blocks past the end of the file ("the image has been truncated"); so does visor.
    const bat = await readExact(reader, batOffset, entries * 4, 'VHD block table');
    const bitmapSize = Math.ceil(blockSize / (8 * 512) / 512) * 512;
    for (let i = 0; i < entries; i++) {
      const sector = bat.readUInt32BE(i * 4);
      if (sector === 0xffffffff) continue;
      if (sector * 512 + bitmapSize + blockSize > dataEnd) {
        problems.push({
          kind: 'invalidInput',
          reason: `truncated VHD: block ${i} (at offset ${sector * 512}) lies beyond the end of the data`,
        });
        break;
      }
    }
  }
  details['blockSize'] = blockSize;
  return { virtualSize, subformat: type, details, problems };
}

/** The size qemu gives the disk: CHS geometry, except for creators that use the current size. */
export function vhdVirtualSize(footer: Buffer): number {
  const creator = footer.subarray(28, 32).toString('latin1');
  const chs = footer.readUInt16BE(56) * footer.readUInt8(58) * footer.readUInt8(59);
  const useCurrentSize = currentSizeCreators.includes(creator) || chs === maxChsSectors;
  return useCurrentSize ? Math.floor(u64(footer, 48, 'be') / 512) * 512 : chs * 512;
}

/** One's complement of the byte sum, with the checksum field itself counted as zero. */
function checksumOk(block: Buffer, at: number, length: number): boolean {
  let sum = 0;
  for (let i = 0; i < length; i++) if (i < at || i >= at + 4) sum += block[i] ?? 0;
  return ~sum >>> 0 === block.readUInt32BE(at);
}
