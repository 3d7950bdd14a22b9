import type { ImageReader } from './reader.js';
import { isoAreaOffset, startsWith, type ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';

/*
 * ISO 9660 / UDF. The first 32 KiB are a "system area" the standard leaves free (hybrid ISOs
 * put an MBR or GPT there; an attacker can put a qcow2 header there, which is why a second
 * format match is refused). Volume descriptors follow, one per 2 KiB sector: type byte,
 * "CD001", version. The primary one (type 1) gives the volume space size (u32 LE at 80) and the
 * logical block size (u16 LE at 128). A UDF volume starts with "BEA01" then "NSR02"/"NSR03".
 */
const sector = 2048;
/** Descriptors visor looks through for the primary one before giving up. */
const maxDescriptors = 16;

export function probeIso(input: ProbeInput): boolean {
  return ['CD001', 'BEA01', 'NSR02', 'NSR03'].some((id) => startsWith(input.isoArea, id, 1));
}

export async function parseIso(reader: ImageReader): Promise<FormatFacts> {
  const problems: Problem[] = [];
  for (let i = 0; i < maxDescriptors; i++) {
    const offset = isoAreaOffset + i * sector;
    if (offset + sector > reader.size) break;
    const descriptor = await reader.read(offset, sector);
    const type = descriptor[0];
    if (startsWith(descriptor, 'CD001', 1)) {
      if (type === 255) break;
      if (type !== 1) continue;
      const blockSize = descriptor.readUInt16LE(128);
      const blocks = descriptor.readUInt32LE(80);
      if (![512, 1024, 2048].includes(blockSize))
        return {
          details: {},
          problems: [{ kind: 'invalidInput', reason: `ISO 9660 logical block size ${blockSize} is invalid` }],
        };
      const virtualSize = blocks * blockSize;
      if (virtualSize > reader.size)
        problems.push({
          kind: 'invalidInput',
          reason: `truncated ISO: its volume of ${virtualSize} bytes is larger than the file (${reader.size} bytes)`,
        });
      const label = descriptor.subarray(40, 72).toString('latin1').trim();
      return { virtualSize, subformat: 'iso9660', details: label ? { volumeId: label } : {}, problems };
    }
    if (!['BEA01', 'NSR02', 'NSR03', 'TEA01', 'BOOT2'].some((id) => startsWith(descriptor, id, 1))) break;
  }
  // A UDF-only volume: its size lives deep in the UDF structures; the file's size stands in.
  return { virtualSize: reader.size, subformat: 'udf', details: {}, problems };
}
