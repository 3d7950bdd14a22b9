import { readExact, u64, type ImageReader } from './reader.js';
import { startsWith, type ProbeInput } from './probe.js';
import type { FormatFacts, Problem } from './types.js';

/*
 * QEMU qcow2 (the qcow2 specification in QEMU's interoperability docs). Big-endian header:
 *   0 magic "QFI\xfb" · 4 version · 8 backing_file_offset u64 · 16 backing_file_size u32
 *   20 cluster_bits · 24 size u64 · 32 crypt_method · 36 l1_size · 40 l1_table_offset u64
 *   48 refcount_table_offset u64 · 56 refcount_table_clusters · 60 nb_snapshots
 *   64 snapshots_offset u64 · v3: 72 incompatible_features u64 · 80 compatible u64
 *   88 autoclear u64 · 96 refcount_order · 100 header_length
 * Header extensions (type u32, length u32, data padded to 8) follow the header up to the end of
 * the first cluster.
 */
const magic = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

const incompatible = { dirty: 0, corrupt: 1, dataFile: 2, compressionType: 3, extendedL2: 4 } as const;
const knownIncompatibleBits = 5;

const extension = {
  end: 0,
  backingFormat: 0xe2792aca,
  featureNames: 0x6803f857,
  bitmaps: 0x23852875,
  encryption: 0x0537be77,
  dataFile: 0x44415441,
} as const;
/** More extensions than any real image has: a bound on the walk through cluster 0. */
const maxExtensions = 64;

export function probeQcow(input: ProbeInput): 'qcow2' | 'qcow' | undefined {
  if (!startsWith(input.head, magic) || input.head.length < 8) return undefined;
  return input.head.readUInt32BE(4) === 1 ? 'qcow' : 'qcow2';
}

export async function parseQcow2(reader: ImageReader): Promise<FormatFacts> {
  const problems: Problem[] = [];
  const base = await readExact(reader, 0, 72, 'qcow2 header');
  const version = base.readUInt32BE(4);
  if (version !== 2 && version !== 3) {
    return { details: { version }, problems: [{ kind: 'unsafe', reason: `unsupported qcow2 version ${version}` }] };
  }
  const clusterBits = base.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21)
    return {
      details: { version },
      problems: [{ kind: 'invalidInput', reason: `invalid qcow2 cluster_bits ${clusterBits}` }],
    };
  const clusterSize = 2 ** clusterBits;
  const virtualSize = u64(base, 24, 'be');
  const cryptMethod = base.readUInt32BE(32);
  const l1Size = base.readUInt32BE(36);
  const l1Offset = u64(base, 40, 'be');
  const refcountOffset = u64(base, 48, 'be');
  const refcountClusters = base.readUInt32BE(56);
  const snapshots = base.readUInt32BE(60);
  const snapshotsOffset = u64(base, 64, 'be');

  let headerLength = 72;
  let incompatibleBits = 0n;
  if (version === 3) {
    const v3 = await readExact(reader, 72, 32, 'qcow2 version 3 header');
    incompatibleBits = v3.readBigUInt64BE(0);
    headerLength = v3.readUInt32BE(28);
    if (headerLength < 104 || headerLength > clusterSize)
      problems.push({ kind: 'invalidInput', reason: `invalid qcow2 header_length ${headerLength}` });
  }
  const flag = (bit: number) => (incompatibleBits & (1n << BigInt(bit))) !== 0n;
  const details: FormatFacts['details'] = {
    version,
    clusterSize,
    encrypted: cryptMethod !== 0,
    dirty: flag(incompatible.dirty),
    extendedL2: flag(incompatible.extendedL2),
  };

  // Backing files and external data files make qemu open other files of the host (CVE-2022-47951
  // and CVE-2024-32498 used exactly these): refused, naming the file.
  const backingOffset = u64(base, 8, 'be');
  if (backingOffset !== 0) {
    const backingSize = base.readUInt32BE(16);
    const name =
      backingSize > 0 && backingSize <= 1023 && backingOffset + backingSize <= Math.min(clusterSize, reader.size)
        ? (await reader.read(backingOffset, backingSize)).toString('utf8')
        : undefined;
    problems.push({
      kind: 'unsafe',
      reason:
        name === undefined
          ? 'qcow2 image has a backing file'
          : `qcow2 image has a backing file: ${JSON.stringify(name)}`,
    });
  }
  if (flag(incompatible.dataFile)) problems.push({ kind: 'unsafe', reason: 'qcow2 image uses an external data file' });
  const unknown: number[] = [];
  for (let bit = knownIncompatibleBits; bit < 64; bit++) if (flag(bit)) unknown.push(bit);
  if (unknown.length > 0)
    problems.push({
      kind: 'unsafe',
      reason: `qcow2 image has unknown incompatible feature bits ${unknown.join(', ')}`,
    });
  if (flag(incompatible.corrupt))
    problems.push({
      kind: 'invalidInput',
      reason: 'qcow2 image is marked corrupt (repair it with qemu-img check -r all)',
    });

  if (problems.every((p) => p.kind !== 'invalidInput')) {
    const extensions = await readExtensions(reader, headerLength, Math.min(clusterSize, reader.size));
    if (extensions.dataFile !== undefined) {
      const reason = `qcow2 image names an external data file: ${JSON.stringify(extensions.dataFile)}`;
      const generic = problems.findIndex((p) => p.reason === 'qcow2 image uses an external data file');
      if (generic >= 0) problems.splice(generic, 1, { kind: 'unsafe', reason });
      else problems.push({ kind: 'unsafe', reason });
    }
    if (extensions.backingFormat !== undefined) details['backingFormat'] = extensions.backingFormat;
    if (extensions.problem) problems.push(extensions.problem);
  }

  // Tables the header points at must lie inside the file: a truncated image is refused here
  // rather than failing half-way through a conversion or an upload.
  const within = (offset: number, length: number) => offset + length <= reader.size;
  if (l1Size > 0 && !within(l1Offset, l1Size * 8))
    problems.push(truncated(`its L1 table (${l1Size * 8} bytes at offset ${l1Offset})`, reader.size));
  if (!within(refcountOffset, refcountClusters * clusterSize))
    problems.push(
      truncated(`its refcount table (${refcountClusters} clusters at offset ${refcountOffset})`, reader.size),
    );
  if (snapshots > 0 && !within(snapshotsOffset, 1))
    problems.push(truncated(`its snapshot table (offset ${snapshotsOffset})`, reader.size));
  const l2Entries = clusterSize / (flag(incompatible.extendedL2) ? 16 : 8);
  const l1Needed = Math.ceil(virtualSize / (clusterSize * l2Entries));
  if (l1Size < l1Needed)
    problems.push({
      kind: 'invalidInput',
      reason: `qcow2 L1 table has ${l1Size} entries, ${l1Needed} needed for a virtual size of ${virtualSize} bytes`,
    });

  return { virtualSize, subformat: version === 2 ? 'compat=0.10' : 'compat=1.1', details, problems };
}

function truncated(what: string, size: number): Problem {
  return {
    kind: 'invalidInput',
    reason: `truncated qcow2 image: ${what} lies beyond the end of the file (${size} bytes)`,
  };
}

async function readExtensions(
  reader: ImageReader,
  start: number,
  end: number,
): Promise<{ dataFile?: string; backingFormat?: string; problem?: Problem }> {
  const found: { dataFile?: string; backingFormat?: string; problem?: Problem } = {};
  let offset = start;
  for (let i = 0; i < maxExtensions && offset + 8 <= end; i++) {
    const head = await reader.read(offset, 8);
    if (head.length < 8) break;
    const type = head.readUInt32BE(0);
    const length = head.readUInt32BE(4);
    if (type === extension.end) return found;
    if (offset + 8 + length > end) {
      found.problem = {
        kind: 'invalidInput',
        reason: `qcow2 header extension 0x${type.toString(16)} overruns the first cluster`,
      };
      return found;
    }
    if (type === extension.dataFile || type === extension.backingFormat) {
      const text = (await reader.read(offset + 8, Math.min(length, 4096))).toString('utf8');
      if (type === extension.dataFile) found.dataFile = text;
      else found.backingFormat = text;
    }
    offset += 8 + Math.ceil(length / 8) * 8;
  }
  return found;
}
