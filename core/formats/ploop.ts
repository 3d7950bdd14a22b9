import { readExact, u64, type ImageReader } from './reader.js';
import { startsWith, type ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';

/*
 * Virtuozzo ploop / Parallels disk (qemu's "parallels"), little-endian 64-byte header:
 *   0 magic "WithoutFreeSpace" or "WithouFreSpacExt" · 16 version · 28 cluster size (sectors)
 *   32 BAT entries · 36 size (sectors) u64 · 48 data offset (sectors) · 56 extension offset u64
 * The block allocation table follows the header, 4 bytes per cluster.
 */
export function probePloop(input: ProbeInput): boolean {
  return startsWith(input.head, 'WithoutFreeSpace') || startsWith(input.head, 'WithouFreSpacExt');
}

export async function parsePloop(reader: ImageReader): Promise<FormatFacts> {
  const header = await readExact(reader, 0, 64, 'ploop header');
  const problems: Problem[] = [];
  const version = header.readUInt32LE(16);
  const clusterSectors = header.readUInt32LE(28);
  const batEntries = header.readUInt32LE(32);
  const virtualSize = u64(header, 36, 'le') * 512;
  const dataOffset = header.readUInt32LE(48) * 512;
  if (version !== 2) problems.push({ kind: 'unsupported', reason: `unsupported ploop version ${version}` });
  if (clusterSectors === 0 || batEntries * clusterSectors * 512 < virtualSize)
    problems.push({ kind: 'invalidInput', reason: 'ploop block table does not cover the disk size' });
  if (64 + batEntries * 4 > reader.size)
    problems.push({
      kind: 'invalidInput',
      reason:
        `truncated ploop image: its block table (${batEntries * 4} bytes) ` +
        `lies beyond the end of the file (${reader.size} bytes)`,
    });
  else if (dataOffset > reader.size)
    problems.push({
      kind: 'invalidInput',
      reason:
        `truncated ploop image: its data starts at ${dataOffset}, ` + `past the end of the file (${reader.size} bytes)`,
    });
  return { virtualSize, details: { clusterSize: clusterSectors * 512 }, problems };
}
