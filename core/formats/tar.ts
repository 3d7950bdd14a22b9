import { sliceReader, type ImageReader } from './reader.js';
import { startsWith, type ProbeInput } from './probe.js';
import type { Problem, TarMember } from './types.js';

/*
 * Just enough of tar (POSIX ustar, pax and GNU long names) to list an OVA's members by reading
 * their 512-byte headers, skipping over the data: the archive is never read whole.
 */
const block = 512;
/** More members than any OVA has; a bound on the walk. */
export const maxTarMembers = 10_000;

export function probeTar(input: ProbeInput): boolean {
  return startsWith(input.head, 'ustar', 257) && checksumOk(input.head);
}

export interface TarListing {
  members: TarMember[];
  problems: Problem[];
}

/** Every member with its data's offset; stops at the first malformed header. */
export async function listTarMembers(reader: ImageReader): Promise<TarListing> {
  const members: TarMember[] = [];
  const problems: Problem[] = [];
  const seen = new Set<string>();
  let offset = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let paxSize: number | undefined;
  for (let count = 0; ; count++) {
    if (count > maxTarMembers * 2) return fail(`more than ${maxTarMembers} members`);
    if (offset + block > reader.size) {
      // Archives end with zero blocks; one cut short after its last member is still readable.
      if (offset >= reader.size && members.length > 0) break;
      return fail(`truncated archive: header at offset ${offset} lies beyond the end of the file`);
    }
    const header = await reader.read(offset, block);
    if (header.every((b) => b === 0)) break;
    if (!checksumOk(header)) return fail(`bad header checksum at offset ${offset}`);
    const size = paxSize ?? parseSize(header);
    if (size === undefined) return fail(`unreadable member size at offset ${offset}`);
    const dataOffset = offset + block;
    if (dataOffset + size > reader.size)
      return fail(
        `truncated archive: a member of ${size} bytes at offset ${dataOffset} lies beyond the end of the file`,
      );
    const type = String.fromCharCode(header[156] ?? 0);
    offset = dataOffset + Math.ceil(size / block) * block;

    if (type === 'x' || type === 'L' || type === 'g') {
      if (size > 1024 * 1024) return fail(`extended header of ${size} bytes`);
      const data = await reader.read(dataOffset, size);
      if (type === 'L') longName = cString(data);
      else if (type === 'x') ({ path: paxPath, size: paxSize } = parsePax(data));
      continue;
    }
    const name = longName ?? paxPath ?? headerName(header);
    longName = paxPath = paxSize = undefined;
    const unsafe = unsafeName(name);
    if (unsafe) problems.push({ kind: 'unsafe', reason: `archive member ${JSON.stringify(name)} ${unsafe}` });
    const kind = memberKind(type);
    if (kind !== 'file' && kind !== 'directory') {
      problems.push({
        kind: 'unsafe',
        reason: `archive member ${JSON.stringify(name)} is a ${kind}, not a regular file`,
      });
      continue;
    }
    const normal = normalise(name);
    if (seen.has(normal))
      problems.push({ kind: 'unsafe', reason: `archive member ${JSON.stringify(normal)} appears twice` });
    seen.add(normal);
    members.push({ name: normal, type: kind, offset: dataOffset, size });
    if (members.length > maxTarMembers) return fail(`more than ${maxTarMembers} members`);
  }
  return { members, problems };

  function fail(reason: string): TarListing {
    return { members, problems: [...problems, { kind: 'invalidInput', reason: `invalid tar archive: ${reason}` }] };
  }
}

/** A member's data as an image of its own. */
export function tarMemberReader(archive: ImageReader, member: TarMember): ImageReader {
  return sliceReader(archive, member.offset, member.size);
}

/** Why a member name could escape the folder it is extracted into, if it could. */
export function unsafeName(name: string): string | undefined {
  if (name === '') return 'has an empty name';
  if (name.startsWith('/')) return 'has an absolute path';
  if (name.includes('\\')) return 'has a backslash in its name';
  if (name.split('/').includes('..')) return 'climbs out of the archive with ".."';
  return undefined;
}

function normalise(name: string): string {
  return name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

function memberKind(type: string): 'file' | 'directory' | string {
  switch (type) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '5':
      return 'directory';
    case '1':
      return 'hard link';
    case '2':
      return 'symbolic link';
    case '3':
    case '4':
      return 'device';
    case '6':
      return 'FIFO';
    case 'S':
      return 'GNU sparse file';
    default:
      return `member of type ${JSON.stringify(type)}`;
  }
}

function headerName(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  // POSIX ustar ("ustar\0") has a prefix field; the GNU format ("ustar  ") uses those bytes otherwise.
  const prefix = startsWith(header, 'ustar\0', 257) ? cString(header.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function parseSize(header: Buffer): number | undefined {
  const field = header.subarray(124, 136);
  if ((field[0] ?? 0) & 0x80) {
    // GNU base-256 for sizes of 8 GiB and more: big-endian with the top bit as the marker.
    let value = BigInt((field[0] ?? 0) & 0x7f);
    for (const b of field.subarray(1)) value = (value << 8n) | BigInt(b);
    return value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim();
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : text === '' ? 0 : undefined;
}

function parsePax(data: Buffer): { path?: string; size?: number } {
  const result: { path?: string; size?: number } = {};
  let at = 0;
  const text = data.toString('utf8');
  while (at < text.length) {
    const space = text.indexOf(' ', at);
    if (space < 0) break;
    const length = Number(text.slice(at, space));
    if (!Number.isInteger(length) || length <= 0) break;
    const record = text.slice(space + 1, at + length - 1);
    const eq = record.indexOf('=');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === 'path') result.path = value;
    if (key === 'size' && /^\d+$/.test(value)) result.size = Number(value);
    at += length;
  }
  return result;
}

function checksumOk(header: Buffer): boolean {
  if (header.length < block) return false;
  const stored = parseInt(
    header
      .subarray(148, 156)
      .toString('latin1')
      .replace(/[\0 ]+$/, '')
      .trim(),
    8,
  );
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < block; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function cString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return (nul >= 0 ? bytes.subarray(0, nul) : bytes).toString('utf8');
}
