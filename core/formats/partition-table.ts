import type { ProbeInput } from './probe.js';
import type { PartitionTable } from './types.js';

/**
 * An MBR (0x55AA at 510) or a GPT (its protective MBR holds a 0xEE partition) at the start of
 * the content. Not a disk format of its own: raw whole-disk images and hybrid ISOs have one, and
 * Glance, Nova and Ironic accept them as raw and iso. A FAT boot sector carries the same
 * signature, so it is told apart by its BIOS parameter block, as oslo.utils does.
 */
export function probePartitionTable(input: ProbeInput): PartitionTable | undefined {
  const mbr = input.head;
  if (mbr.length < 512 || mbr.readUInt16LE(510) !== 0xaa55) return undefined;
  const fatBootSector = mbr[0x10] === 2 && mbr[0x15] === 0xf8;
  if (fatBootSector) return undefined;
  let any = false;
  for (let i = 0; i < 4; i++) {
    const entry = 446 + i * 16;
    const type = mbr[entry + 4];
    if (type === 0xee) return 'gpt';
    if (type !== 0) any = true;
  }
  return any ? 'mbr' : undefined;
}
