import { probePartitionTable } from './partition-table.js';
import { parseIso, probeIso } from './iso.js';
import { parseOva } from './ova.js';
import { parsePloop, probePloop } from './ploop.js';
import { readProbeInput, startsWith, type ProbeInput } from './probe.js';
import { parseQcow2, probeQcow } from './qcow2.js';
import type { ImageReader } from './reader.js';
import { probeTar } from './tar.js';
import type { DetectedFormat, Detection, FormatFacts } from './types.js';
import { parseVdi, probeVdi } from './vdi.js';
import { parseVhd, probeVhd } from './vhd.js';
import { parseVhdx, probeVhdx } from './vhdx.js';
import { parseVmdk, probeVmdkBinary, probeVmdkText } from './vmdk.js';

/**
 * Detects the format from the content alone, reading a few fixed ranges (the first 512 bytes,
 * 2 KiB at 32 KiB, the last 512 bytes) and then only the structures the matching format's
 * headers point at. Every format's signature is checked, not just the first that matches:
 * content matching two formats (a qcow2 header in an ISO's system area, a VHD footer after a
 * qcow2) is how one format is smuggled past a check made for the other. Content no signature
 * matches is raw.
 */
export async function detectFormat(reader: ImageReader): Promise<Detection> {
  const input = await readProbeInput(reader);
  const matches = await signatureMatches(reader, input);
  const partitionTable = probePartitionTable(input);
  const base = { matches, ...(partitionTable ? { partitionTable } : {}) };
  if (reader.size === 0)
    return {
      ...base,
      format: 'raw',
      virtualSize: 0,
      details: {},
      problems: [{ kind: 'invalidInput', reason: 'the image is empty' }],
    };
  if (matches.length > 1) {
    return {
      ...base,
      format: matches[0]!,
      details: {},
      problems: [
        {
          kind: 'unsafe',
          reason:
            `content matches several formats at once (${matches.join(', ')}): ` +
            `one header is hidden inside another format`,
        },
      ],
    };
  }
  const format = matches[0] ?? 'raw';
  const facts = await parse(format, reader, input);
  return { ...base, format, ...facts };
}

async function signatureMatches(reader: ImageReader, input: ProbeInput): Promise<DetectedFormat[]> {
  const matches: DetectedFormat[] = [];
  const qcow = probeQcow(input);
  if (qcow) matches.push(qcow);
  if (startsWith(input.head, 'QED\0')) matches.push('qed');
  if (startsWith(input.head, Buffer.from('LUKS\xba\xbe', 'latin1'))) matches.push('luks');
  if (probeVmdkBinary(input)) matches.push('vmdk');
  if (probeVhdx(input)) matches.push('vhdx');
  if (probeVhd(input)) matches.push('vhd');
  if (probeVdi(input)) matches.push('vdi');
  if (probePloop(input)) matches.push('ploop');
  if (probeIso(input)) matches.push('iso');
  if (probeTar(input)) matches.push('ova');
  // Text is looked at only when nothing binary matched: a descriptor file is plain ASCII.
  if (matches.length === 0 && (await probeVmdkText(reader, input))) matches.push('vmdk');
  return matches;
}

function parse(format: DetectedFormat, reader: ImageReader, input: ProbeInput): Promise<FormatFacts> | FormatFacts {
  switch (format) {
    case 'qcow2':
      return parseQcow2(reader);
    case 'vmdk':
      return parseVmdk(reader, input);
    case 'vhd':
      return parseVhd(reader, input);
    case 'vhdx':
      return parseVhdx(reader);
    case 'vdi':
      return parseVdi(reader);
    case 'ploop':
      return parsePloop(reader);
    case 'iso':
      return parseIso(reader);
    case 'ova':
      return parseOva(reader);
    case 'raw':
      return { virtualSize: reader.size, details: {}, problems: [] };
    case 'qed':
    case 'qcow':
    case 'luks':
      // Recognised only to be refused (inspectImage says why); nothing to parse.
      return { details: {}, problems: [] };
  }
}
