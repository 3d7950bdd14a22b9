import { readExact, u64, type ImageReader } from './reader.js';
import { startsWith, type ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';
import { isPlainFileName, maxDescriptorBytes, parseVmdkDescriptor, type VmdkDescriptor } from './vmdk-descriptor.js';

/*
 * VMware VMDK. A hosted sparse extent ("KDMV", little-endian) starts with:
 *   0 magic · 4 version · 8 flags · 12 capacity (sectors) u64 · 20 grainSize u64
 *   28 descriptorOffset (sectors) u64 · 36 descriptorSize (sectors) u64 · 44 numGTEsPerGT
 *   48 rgdOffset u64 · 56 gdOffset u64 (all ones: read the footer at the end instead)
 * and embeds a text descriptor. A VMDK can also be a bare text descriptor whose extents are
 * other files: that is how CVE-2022-47951 read host files through qemu-img.
 */
const gdAtEnd = 0xffffffffffffffffn;
const singleFileTypes = new Set(['monolithicsparse', 'streamoptimized']);

export function probeVmdkBinary(input: ProbeInput): boolean {
  return startsWith(input.head, 'KDMV') || startsWith(input.head, 'COWD');
}

/** A text file that reads like a VMDK descriptor (qemu's probe would take it for one). */
export async function probeVmdkText(reader: ImageReader, input: ProbeInput): Promise<boolean> {
  if (input.head.length === 0 || !isText(input.head)) return false;
  const text = (await reader.read(0, Math.min(reader.size, maxDescriptorBytes))).toString('latin1');
  return hasDescriptorLine(text);
}

/** Blank space from the start of the text or of a line (it may span lines, as `\s` did in the old pattern). */
const lineStart = /(?:^|[\n\r\u2028\u2029])\s*/g;
/** What a descriptor line begins with, tried only where `lineStart` ends (sticky). */
const descriptorKey = /#\s*disk\s*descriptorfile|createtype\s*=|version\s*=\s*\d/iy;

/**
 * /^\s*KEY/im, in linear time: the multiline regex retried `\s*` from every line start inside a
 * run of blank lines, so a 64 KiB upload of newlines cost seconds of CPU per pattern. Every line
 * start inside one blank run leads to the same place (the run's end), which is tried once.
 */
export function hasDescriptorLine(text: string): boolean {
  lineStart.lastIndex = 0;
  for (let match = lineStart.exec(text); match; match = lineStart.exec(text)) {
    const end = match.index + match[0].length;
    descriptorKey.lastIndex = end;
    if (descriptorKey.test(text)) return true;
    // An empty match (the text's start, not blank) would be found again at the same place.
    if (end === match.index) lineStart.lastIndex = end + 1;
  }
  return false;
}

function isText(bytes: Buffer): boolean {
  const nul = bytes.indexOf(0);
  const text = nul >= 0 ? bytes.subarray(0, nul) : bytes;
  // Trailing NUL padding is allowed (descriptors are padded to a sector), embedded binary is not.
  if (nul >= 0 && !bytes.subarray(nul).every((b) => b === 0)) return false;
  return text.length > 0 && text.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f));
}

export async function parseVmdk(reader: ImageReader, input: ProbeInput): Promise<FormatFacts> {
  if (startsWith(input.head, 'COWD')) {
    return {
      subformat: 'vmdk3',
      details: {},
      problems: [{ kind: 'unsupported', reason: 'VMDK3 (COWD, ESX 2) sparse extents are not supported' }],
    };
  }
  if (startsWith(input.head, 'KDMV')) return parseSparse(reader);
  return parseTextDescriptor(reader);
}

async function parseSparse(reader: ImageReader): Promise<FormatFacts> {
  let header = await readExact(reader, 0, 64, 'VMDK sparse header');
  const version = header.readUInt32LE(4);
  if (version < 1 || version > 3)
    return {
      details: { version },
      problems: [{ kind: 'unsupported', reason: `unsupported VMDK sparse extent version ${version}` }],
    };
  const problems: Problem[] = [];

  // streamOptimized images may say "grain directory at the end": qemu then takes capacity and
  // descriptor from the footer, so the footer must be present and agree with the header.
  if (header.readBigUInt64LE(56) === gdAtEnd) {
    const footer = await readFooter(reader, header, problems);
    if (!footer) return { details: { version }, problems };
    header = footer;
  }
  const capacitySectors = u64(header, 12, 'le');
  const descriptorOffset = u64(header, 28, 'le') * 512;
  const descriptorSize = u64(header, 36, 'le') * 512;
  const gdOffset = u64(header, 56, 'le') * 512;
  if (gdOffset >= reader.size)
    problems.push({
      kind: 'invalidInput',
      reason:
        `truncated VMDK: its grain directory (offset ${gdOffset}) ` +
        `lies beyond the end of the file (${reader.size} bytes)`,
    });

  if (descriptorOffset === 0 || descriptorSize === 0) {
    problems.push({ kind: 'unsafe', reason: 'sparse VMDK has no embedded descriptor (an extent of a split VMDK?)' });
    return { virtualSize: capacitySectors * 512, details: { version }, problems };
  }
  if (descriptorSize > maxDescriptorBytes) {
    problems.push({
      kind: 'invalidInput',
      reason: `VMDK embedded descriptor of ${descriptorSize} bytes exceeds the ${maxDescriptorBytes} bytes visor reads`,
    });
    return { details: { version }, problems };
  }
  const descriptor = parseVmdkDescriptor(
    await readExact(reader, descriptorOffset, descriptorSize, 'VMDK embedded descriptor'),
  );
  problems.push(...descriptor.problems);
  const createType = descriptor.createType;
  if (createType === undefined) problems.push({ kind: 'unsafe', reason: 'VMDK descriptor has no createType' });
  else if (!singleFileTypes.has(createType.toLowerCase()))
    problems.push({
      kind: 'unsafe',
      reason: `VMDK createType "${createType}" is not a single-file type (monolithicSparse or streamOptimized)`,
    });
  problems.push(...checkEmbeddedExtents(descriptor));
  if (capacitySectors === 0) {
    // With capacity 0 qemu ignores the sparse data and opens the descriptor's extents instead.
    problems.push({
      kind: 'unsafe',
      reason: 'sparse VMDK declares capacity 0, which makes qemu open the extents its descriptor lists',
    });
  }
  return {
    virtualSize: capacitySectors * 512,
    ...(createType === undefined ? {} : { subformat: createType }),
    details: { version },
    problems,
  };
}

/** The one extent of a single-file VMDK is the file itself: a SPARSE extent with a plain name. */
function checkEmbeddedExtents(descriptor: VmdkDescriptor): Problem[] {
  const others = descriptor.extents.filter(
    (e, i) => i > 0 || e.type !== 'SPARSE' || e.file === undefined || !isPlainFileName(e.file),
  );
  if (descriptor.extents.length === 0) return [{ kind: 'unsafe', reason: 'VMDK descriptor lists no extent' }];
  if (others.length === 0) return [];
  return [
    {
      kind: 'unsafe',
      reason: `VMDK descriptor names extents other than the file itself: ${others.map(describeExtent).join(', ')}`,
    },
  ];
}

async function parseTextDescriptor(reader: ImageReader): Promise<FormatFacts> {
  const oversized = reader.size > maxDescriptorBytes;
  const descriptor = parseVmdkDescriptor(await reader.read(0, maxDescriptorBytes));
  const named = descriptor.extents.filter((e) => e.file !== undefined);
  const createType = descriptor.createType;
  const what = `VMDK descriptor file${createType === undefined ? '' : ` (createType "${createType}")`}`;
  const problems: Problem[] = [
    named.length > 0
      ? { kind: 'unsafe', reason: `${what} keeps its data in other files: ${named.map(describeExtent).join(', ')}` }
      : { kind: 'unsafe', reason: `${what} is not a single-file image` },
    ...descriptor.problems,
  ];
  if (oversized)
    problems.push({
      kind: 'invalidInput',
      reason: `VMDK descriptor file is larger than the ${maxDescriptorBytes} bytes visor reads`,
    });
  const sectors = descriptor.extents.reduce((sum, e) => sum + e.sectors, 0);
  return {
    ...(sectors > 0 ? { virtualSize: sectors * 512 } : {}),
    ...(createType === undefined ? {} : { subformat: createType }),
    details: { descriptorFile: true },
    problems,
  };
}

function describeExtent(extent: VmdkExtent): string {
  return extent.file === undefined
    ? `${extent.type} extent (line ${extent.line})`
    : `${extent.type} ${JSON.stringify(extent.file)}`;
}

type VmdkExtent = VmdkDescriptor['extents'][number];

/** Footer marker, footer (a copy of the header) and end-of-stream marker: the last 1536 bytes. */
async function readFooter(reader: ImageReader, header: Buffer, problems: Problem[]): Promise<Buffer | undefined> {
  if (reader.size < 512 + 1536) {
    problems.push({
      kind: 'invalidInput',
      reason: 'truncated VMDK: its header announces a footer the file is too short to hold',
    });
    return undefined;
  }
  const tail = await readExact(reader, reader.size - 1536, 1536, 'VMDK footer');
  const marker = tail.subarray(0, 512);
  const footer = tail.subarray(512, 1024);
  const eos = tail.subarray(1024);
  const zeros = (b: Buffer) => b.every((x) => x === 0);
  const fail = (reason: string) => {
    problems.push({ kind: 'invalidInput', reason: `VMDK footer is invalid: ${reason}` });
    return undefined;
  };
  if (marker.readUInt32LE(8) !== 0 || marker.readUInt32LE(12) !== 3 || !zeros(marker.subarray(16)))
    return fail('no footer marker before it');
  if (!zeros(eos)) return fail('no end-of-stream marker after it');
  if (!footer.subarray(0, 8).equals(header.subarray(0, 8))) return fail('signature or version differs from the header');
  // A footer pointing at another descriptor would let qemu read one that visor did not check.
  if (!footer.subarray(28, 44).equals(header.subarray(28, 44)))
    return fail('it names a different descriptor than the header');
  if (footer.readBigUInt64LE(56) === gdAtEnd) return fail('it announces yet another footer');
  return footer;
}
