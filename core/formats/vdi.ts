import { readExact, u64, type ImageReader } from './reader.js';
import type { ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';

/*
 * VirtualBox VDI (qemu's block/vdi.c), little-endian:
 *   0x40 signature 0xbeda107f · 0x44 version · 0x4c image type (1 dynamic, 2 static, 4 diff)
 *   0x154 block map offset · 0x158 data offset · 0x168 sector size · 0x170 disk size u64
 *   0x178 block size · 0x180 blocks in image · 0x184 blocks allocated · 0x1b8 parent UUID
 */
const signature = 0xbeda107f;
const imageTypes: Record<number, string> = { 1: 'dynamic', 2: 'static', 3: 'undo', 4: 'differencing' };

export function probeVdi(input: ProbeInput): boolean {
  return input.head.length >= 0x44 && input.head.readUInt32LE(0x40) === signature;
}

export async function parseVdi(reader: ImageReader): Promise<FormatFacts> {
  const header = await readExact(reader, 0, 0x1c8, 'VDI header');
  const problems: Problem[] = [];
  const version = header.readUInt32LE(0x44);
  const typeCode = header.readUInt32LE(0x4c);
  const type = imageTypes[typeCode] ?? `type ${typeCode}`;
  const bmapOffset = header.readUInt32LE(0x154);
  const dataOffset = header.readUInt32LE(0x158);
  const sectorSize = header.readUInt32LE(0x168);
  const virtualSize = u64(header, 0x170, 'le');
  const blockSize = header.readUInt32LE(0x178);
  const blocks = header.readUInt32LE(0x180);
  const allocated = header.readUInt32LE(0x184);

  if (version >>> 16 !== 1)
    problems.push({ kind: 'unsupported', reason: `unsupported VDI version ${version >>> 16}.${version & 0xffff}` });
  if (typeCode === 3 || typeCode === 4) {
    // Undo and differencing images read unallocated blocks from a parent image.
    problems.push({
      kind: 'unsafe',
      reason: `${type} VDI image depends on a parent image (${formatUuid(header.subarray(0x1b8, 0x1c8))})`,
    });
  } else if (typeCode !== 1 && typeCode !== 2) {
    problems.push({ kind: 'invalidInput', reason: `unknown VDI image type ${typeCode}` });
  }
  if (sectorSize !== 512) problems.push({ kind: 'invalidInput', reason: `unsupported VDI sector size ${sectorSize}` });
  if (blockSize === 0 || blocks * blockSize < virtualSize)
    problems.push({
      kind: 'invalidInput',
      reason: `VDI block map (${blocks} blocks of ${blockSize} bytes) does not cover the disk size ${virtualSize}`,
    });
  if (allocated > blocks)
    problems.push({ kind: 'invalidInput', reason: `VDI claims ${allocated} allocated blocks of ${blocks}` });
  if (bmapOffset < 0x1c8 || bmapOffset + blocks * 4 > dataOffset)
    problems.push({ kind: 'invalidInput', reason: 'VDI block map overlaps the header or the data' });
  if (bmapOffset + blocks * 4 > reader.size || dataOffset + allocated * blockSize > reader.size) {
    problems.push({
      kind: 'invalidInput',
      reason:
        `truncated VDI: ${allocated} allocated blocks ` +
        `need ${dataOffset + allocated * blockSize} bytes, the file has ${reader.size}`,
    });
  }
  return { virtualSize, subformat: type, details: { blockSize }, problems };
}

function formatUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
