import type { ImageReader } from './reader.js';
import { diskFormatFromOvfUri, maxOvfBytes, parseOvf } from './ovf.js';
import { listTarMembers, unsafeName } from './tar.js';
import type { FormatFacts, OvaLayout, Problem } from './types.js';

/**
 * An OVA: a tar archive holding exactly one OVF descriptor and the files it references. Checks
 * that every member name stays inside the archive, that the descriptor is unambiguous, and that
 * every file it references is a member (never a path or URL outside the archive). The files
 * themselves are inspected one by one by inspectImage.
 */
export async function parseOva(reader: ImageReader): Promise<FormatFacts & { ova?: OvaLayout }> {
  const listing = await listTarMembers(reader);
  const problems: Problem[] = [...listing.problems];
  // A malformed or cut archive lists only some members: checking references against it would
  // misreport the rest as missing.
  if (problems.some((p) => p.kind === 'invalidInput')) return { details: {}, problems };
  const descriptors = listing.members.filter((m) => m.type === 'file' && m.name.toLowerCase().endsWith('.ovf'));
  if (descriptors.length === 0)
    return {
      details: {},
      problems: [...problems, { kind: 'invalidInput', reason: 'tar archive holds no OVF descriptor (not an OVA)' }],
    };
  if (descriptors.length > 1)
    return {
      details: {},
      problems: [
        ...problems,
        {
          kind: 'unsafe',
          reason:
            `OVA holds ${descriptors.length} OVF descriptors ` +
            `(${descriptors.map((d) => d.name).join(', ')}); exactly one is allowed`,
        },
      ],
    };
  const descriptor = descriptors[0]!;
  if (descriptor.size > maxOvfBytes)
    return {
      details: {},
      problems: [
        ...problems,
        { kind: 'invalidInput', reason: `OVF descriptor ${descriptor.name} is larger than ${maxOvfBytes} bytes` },
      ],
    };

  const ovf = parseOvf(await reader.read(descriptor.offset, descriptor.size));
  problems.push(...ovf.problems);
  const files: OvaLayout['files'] = [];
  if (ovf.references) {
    const byName = new Map(listing.members.filter((m) => m.type === 'file').map((m) => [m.name, m]));
    const disksByFile = new Map(
      ovf.references.disks.filter((d) => d.fileRef !== undefined).map((d) => [d.fileRef!, d]),
    );
    for (const disk of disksByFile.keys()) {
      if (!ovf.references.files.some((f) => f.id === disk))
        problems.push({
          kind: 'invalidInput',
          reason: `OVF disk refers to file id ${JSON.stringify(disk)}, which References does not define`,
        });
    }
    for (const file of ovf.references.files) {
      const where = `OVF file ${JSON.stringify(file.id)} (href ${JSON.stringify(file.href)})`;
      if (/^[a-z][a-z0-9+.-]*:/i.test(file.href)) {
        problems.push({ kind: 'unsafe', reason: `${where} points outside the archive` });
        continue;
      }
      const unsafe = unsafeName(file.href);
      if (unsafe) {
        problems.push({ kind: 'unsafe', reason: `${where} ${unsafe}` });
        continue;
      }
      if (file.compression !== undefined && file.compression !== 'identity')
        problems.push({
          kind: 'unsupported',
          reason: `${where} is ${file.compression}-compressed, which visor does not unpack`,
        });
      if (file.chunkSize !== undefined)
        problems.push({ kind: 'unsupported', reason: `${where} is split into chunks, which visor does not join` });
      const member = byName.get(file.href.replace(/^(\.\/)+/, ''));
      if (!member) {
        problems.push({ kind: 'unsafe', reason: `${where} names a file the archive does not contain` });
        continue;
      }
      const disk = disksByFile.get(file.id);
      const expected = diskFormatFromOvfUri(disk?.format);
      files.push({ id: file.id, href: file.href, member, disk: disk !== undefined, ...(expected ? { expected } : {}) });
    }
    if (!files.some((f) => f.disk) && problems.length === 0)
      problems.push({ kind: 'invalidInput', reason: 'OVA holds no disk: its OVF descriptor references no disk file' });
  }
  return {
    details: { descriptor: descriptor.name, members: listing.members.length },
    problems,
    ova: { descriptor: descriptor.name, members: listing.members, files },
  };
}
