import { XMLParser, XMLValidator } from '../wire/xml.js';
import { z } from 'zod';
import type { DiskFormat } from '../image/model.js';
import type { Problem } from './types.js';

/**
 * The parts of an OVF descriptor (DMTF DSP0243) that name files: `References/File` (id, href)
 * and `DiskSection/Disk` (fileRef, format URI). The rest of the envelope (virtual hardware)
 * does not concern content safety.
 */
export interface OvfFile {
  id: string;
  href: string;
  compression?: string;
  chunkSize?: string;
}

export interface OvfDisk {
  fileRef?: string;
  format?: string;
}

export interface OvfReferences {
  files: OvfFile[];
  disks: OvfDisk[];
}

/** Larger than any real descriptor (they are a few KiB). */
export const maxOvfBytes = 4 * 1024 * 1024;

const attributes = z.record(z.string(), z.unknown());
const fileSchema = attributes.pipe(
  z.object({
    '@_id': z.string().min(1),
    '@_href': z.string().min(1),
    '@_compression': z.string().optional(),
    '@_chunkSize': z.string().optional(),
  }),
);
const diskSchema = attributes.pipe(z.object({ '@_fileRef': z.string().optional(), '@_format': z.string().optional() }));
const envelopeSchema = z.object({
  Envelope: z.object({
    References: z.union([z.object({ File: z.array(fileSchema).optional() }), z.literal('')]).optional(),
    DiskSection: z.union([z.object({ Disk: z.array(diskSchema).optional() }), z.literal('')]).optional(),
  }),
});

export function parseOvf(xml: Buffer): { references?: OvfReferences; problems: Problem[] } {
  const text = xml.toString('utf8');
  // OVF descriptors have no DTD; one that declares entities is hostile (billion laughs, XXE).
  if (/<!DOCTYPE/i.test(text)) return { problems: [{ kind: 'unsafe', reason: 'OVF descriptor declares a DTD' }] };
  const valid = XMLValidator.validate(text);
  if (valid !== true)
    return {
      problems: [
        {
          kind: 'invalidInput',
          reason: `OVF descriptor is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`,
        },
      ],
    };
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    removeNSPrefix: true,
    parseAttributeValue: false,
    parseTagValue: false,
    processEntities: false,
    maxNestedTags: 64,
    isArray: (name) => name === 'File' || name === 'Disk',
  });
  const parsed = envelopeSchema.safeParse(parser.parse(text));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      problems: [
        {
          kind: 'invalidInput',
          reason:
            `OVF descriptor is not a valid envelope: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim(),
        },
      ],
    };
  }
  const envelope = parsed.data.Envelope;
  const files = (envelope.References === '' ? [] : (envelope.References?.File ?? [])).map((f) => ({
    id: f['@_id'],
    href: f['@_href'],
    ...(f['@_compression'] === undefined ? {} : { compression: f['@_compression'] }),
    ...(f['@_chunkSize'] === undefined ? {} : { chunkSize: f['@_chunkSize'] }),
  }));
  const disks = (envelope.DiskSection === '' ? [] : (envelope.DiskSection?.Disk ?? [])).map((d) => ({
    ...(d['@_fileRef'] === undefined ? {} : { fileRef: d['@_fileRef'] }),
    ...(d['@_format'] === undefined ? {} : { format: d['@_format'] }),
  }));
  return { references: { files, disks }, problems: [] };
}

/** The disk format an OVF `Disk/@format` URI names, when visor knows it. */
export function diskFormatFromOvfUri(uri: string | undefined): DiskFormat | undefined {
  if (uri === undefined) return undefined;
  const lower = uri.toLowerCase();
  if (lower.includes('vmdk')) return 'vmdk';
  if (lower.includes('qcow')) return 'qcow2';
  if (lower.includes('vhdx')) return 'vhdx';
  if (lower.includes('vhd') || lower.includes('bb676673')) return 'vhd';
  return undefined;
}
