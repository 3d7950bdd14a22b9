import { readExact, u64, type ImageReader } from './reader.js';
import { startsWith, type ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';

/*
 * Microsoft VHDX ([MS-VHDX]), little-endian. "vhdxfile" at 0; the region table at 192 KiB
 * ("regi", entry count at 8, 32-byte entries: GUID, file offset u64, length, required flag)
 * locates the metadata region ("metadata", entry count at 10, 32-byte entries: GUID, offset,
 * length, flags), whose items give the virtual disk size and, for a differencing disk, the
 * parent locator (a backing file).
 */
const regionTableOffset = 192 * 1024;
const regions = {
  bat: guid('2DC27766-F623-4200-9D64-115E9BFD4A08'),
  metadata: guid('8B7CA206-4790-4B9A-B8FE-575F050F886E'),
};
const items = {
  fileParameters: guid('CAA16737-FA36-4D43-B3B6-33F0AA44E76B'),
  virtualDiskSize: guid('2FA54224-CD1B-4876-B211-5DBED83BF4B8'),
  page83: guid('BECA12AB-B2E6-4523-93EF-C309E000C746'),
  logicalSectorSize: guid('8141BF1D-A96F-4709-BA47-F233A8FAAB5F'),
  physicalSectorSize: guid('CDA348C7-445D-4471-9CC9-E9885251C556'),
  parentLocator: guid('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C'),
};
const knownItems = Object.values(items);
const maxEntries = 2047;

export function probeVhdx(input: ProbeInput): boolean {
  return startsWith(input.head, 'vhdxfile');
}

export async function parseVhdx(reader: ImageReader): Promise<FormatFacts> {
  const problems: Problem[] = [];
  const fail = (reason: string, kind: Problem['kind'] = 'invalidInput'): FormatFacts => ({
    details: {},
    problems: [...problems, { kind, reason }],
  });

  const tableHead = await readExact(reader, regionTableOffset, 16, 'VHDX region table');
  if (!startsWith(tableHead, 'regi')) return fail('VHDX region table signature "regi" not found');
  const regionCount = tableHead.readUInt32LE(8);
  if (regionCount > maxEntries) return fail(`VHDX region table has ${regionCount} entries (at most ${maxEntries})`);
  const table = await readExact(reader, regionTableOffset + 16, regionCount * 32, 'VHDX region table entries');
  let metadata: { offset: number; length: number } | undefined;
  for (let i = 0; i < regionCount; i++) {
    const entry = table.subarray(i * 32, i * 32 + 32);
    const id = entry.subarray(0, 16);
    const offset = u64(entry, 16, 'le');
    const length = entry.readUInt32LE(24);
    const required = (entry.readUInt32LE(28) & 1) === 1;
    if (offset + length > reader.size)
      problems.push({
        kind: 'invalidInput',
        reason:
          `truncated VHDX: region ${formatGuid(id)} (${length} bytes at offset ${offset}) ` +
          `lies beyond the end of the file (${reader.size} bytes)`,
      });
    if (id.equals(regions.metadata)) metadata = { offset, length };
    else if (!id.equals(regions.bat) && required)
      problems.push({ kind: 'unsupported', reason: `VHDX has an unknown required region ${formatGuid(id)}` });
  }
  if (!metadata) return fail('VHDX has no metadata region');
  if (problems.some((p) => p.kind === 'invalidInput')) return { details: {}, problems };

  const metaHead = await readExact(reader, metadata.offset, 32, 'VHDX metadata table');
  if (!startsWith(metaHead, 'metadata')) return fail('VHDX metadata table signature "metadata" not found');
  const itemCount = metaHead.readUInt16LE(10);
  if (itemCount > maxEntries) return fail(`VHDX metadata table has ${itemCount} entries (at most ${maxEntries})`);
  const entries = await readExact(reader, metadata.offset + 32, itemCount * 32, 'VHDX metadata entries');
  const found = new Map<string, { offset: number; length: number }>();
  for (let i = 0; i < itemCount; i++) {
    const entry = entries.subarray(i * 32, i * 32 + 32);
    const id = entry.subarray(0, 16);
    const offset = entry.readUInt32LE(16);
    const length = entry.readUInt32LE(20);
    const required = (entry.readUInt32LE(24) & 4) !== 0;
    if (offset + length > metadata.length)
      problems.push({
        kind: 'invalidInput',
        reason: `VHDX metadata item ${formatGuid(id)} lies outside the metadata region`,
      });
    else found.set(id.toString('hex'), { offset: metadata.offset + offset, length });
    if (required && !knownItems.some((k) => k.equals(id)))
      problems.push({ kind: 'unsupported', reason: `VHDX has an unknown required metadata item ${formatGuid(id)}` });
  }
  const item = (id: Buffer) => found.get(id.toString('hex'));

  const params = item(items.fileParameters);
  const sizeItem = item(items.virtualDiskSize);
  if (!params || !sizeItem) return fail('VHDX metadata lacks the file parameters or the virtual disk size');
  const paramData = await readExact(reader, params.offset, 8, 'VHDX file parameters');
  const blockSize = paramData.readUInt32LE(0);
  const hasParent = (paramData.readUInt32LE(4) & 2) !== 0;
  const virtualSize = u64(await readExact(reader, sizeItem.offset, 8, 'VHDX virtual disk size'), 0, 'le');

  const locator = item(items.parentLocator);
  if (hasParent || locator) {
    const parent = locator ? await parentPath(reader, locator) : undefined;
    problems.push({
      kind: 'unsafe',
      reason: `differencing VHDX depends on a parent disk${parent ? `: ${JSON.stringify(parent)}` : ''}`,
    });
  }
  return { virtualSize, details: { blockSize }, problems };
}

/** The parent's path from the locator's key/value pairs (UTF-16LE), for the refusal message. */
async function parentPath(
  reader: ImageReader,
  locator: { offset: number; length: number },
): Promise<string | undefined> {
  if (locator.length < 20 || locator.length > 64 * 1024 || locator.offset + locator.length > reader.size)
    return undefined;
  const data = await reader.read(locator.offset, locator.length);
  const count = data.readUInt16LE(18);
  const values = new Map<string, string>();
  for (let i = 0; i < count && 20 + i * 12 + 12 <= data.length; i++) {
    const at = 20 + i * 12;
    const [keyOffset, valueOffset, keyLength, valueLength] = [
      data.readUInt32LE(at),
      data.readUInt32LE(at + 4),
      data.readUInt16LE(at + 8),
      data.readUInt16LE(at + 10),
    ];
    if (keyOffset + keyLength > data.length || valueOffset + valueLength > data.length) continue;
    values.set(
      data.subarray(keyOffset, keyOffset + keyLength).toString('utf16le'),
      data.subarray(valueOffset, valueOffset + valueLength).toString('utf16le'),
    );
  }
  return values.get('relative_path') ?? values.get('absolute_win32_path') ?? values.get('volume_path');
}

/** A GUID's on-disk bytes: the first three fields little-endian, the rest as written. */
function guid(text: string): Buffer {
  const hex = text.replace(/-/g, '');
  const bytes = Buffer.from(hex, 'hex');
  bytes.subarray(0, 4).reverse();
  bytes.subarray(4, 6).reverse();
  bytes.subarray(6, 8).reverse();
  return bytes;
}

function formatGuid(bytes: Buffer): string {
  const b = Buffer.from(bytes);
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const hex = b.toString('hex').toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
