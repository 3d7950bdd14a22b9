import type { ErrorKind } from '../errors.js';
import type { DiskFormat } from '../image/model.js';

/**
 * Formats content can be detected as. Besides visor's disk formats, `ova` (a tar archive with
 * an OVF descriptor) and formats that are recognised only to be refused: `qed` and `qcow`
 * (version 1) are unsupported everywhere, `luks` needs keys visor never has.
 */
export const detectedFormats = [
  'raw',
  'qcow2',
  'vmdk',
  'vhd',
  'vhdx',
  'vdi',
  'iso',
  'ploop',
  'ova',
  'qed',
  'qcow',
  'luks',
] as const;
export type DetectedFormat = (typeof detectedFormats)[number];

/** Formats that are never accepted, whatever was declared. */
export const refusedFormats: ReadonlySet<DetectedFormat> = new Set(['qed', 'qcow', 'luks']);

export type PartitionTable = 'mbr' | 'gpt';

/** Why content is refused; an inspection collects all of them before it throws. */
export interface Problem {
  kind: Extract<ErrorKind, 'unsafe' | 'invalidInput' | 'unsupported'>;
  reason: string;
}

/** What a format's parser learned from the headers. */
export interface FormatFacts {
  virtualSize?: number;
  /** vmdk createType, vhd fixed|dynamic, qcow2 compat level, iso9660|udf. */
  subformat?: string;
  details: Record<string, string | number | boolean>;
  problems: Problem[];
}

/** The content's format as detected from its bytes, with what its headers say. */
export interface Detection extends FormatFacts {
  format: DetectedFormat;
  /** Every format whose signature matched; more than one means one header hides inside another. */
  matches: DetectedFormat[];
  /** An MBR or GPT at the start: normal for raw disks and hybrid ISOs. */
  partitionTable?: PartitionTable;
  /** For an OVA: the tar members its OVF descriptor references (inspected one by one). */
  ova?: OvaLayout;
}

export interface TarMember {
  name: string;
  type: 'file' | 'directory';
  /** Offset of the member's data in the archive. */
  offset: number;
  size: number;
}

export interface OvaLayout {
  descriptor: string;
  members: TarMember[];
  /** Files the OVF references, in document order; `disk` when a Disk element points at it. */
  files: { id: string; href: string; member: TarMember; disk: boolean; expected?: DiskFormat }[];
}

export interface InspectedMember {
  name: string;
  disk: boolean;
  report: InspectionReport;
}

export interface InspectionReport {
  /** The disk format of the content (for an OVA: of its first disk). */
  format: DiskFormat;
  containerFormat: 'bare' | 'ova';
  /** Size of the inspected file in bytes. */
  size: number;
  virtualSize?: number;
  subformat?: string;
  partitionTable?: PartitionTable;
  details: Record<string, string | number | boolean>;
  /** For an OVA: every file its descriptor references, each inspected as an image of its own. */
  members?: InspectedMember[];
  /** Bytes the inspection read: headers only, never the whole image. */
  bytesRead: number;
}
