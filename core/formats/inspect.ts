import { isVisorError, VisorError } from '../errors.js';
import type { ContainerFormat, DiskFormat } from '../image/model.js';
import { detectFormat } from './detect.js';
import { countingReader, type ImageReader } from './reader.js';
import { tarMemberReader } from './tar.js';
import {
  refusedFormats,
  type DetectedFormat,
  type Detection,
  type InspectedMember,
  type InspectionReport,
  type Problem,
} from './types.js';

export interface InspectOptions {
  /** The disk format the image claims (for an OVA: the format of its disks). */
  declared?: DiskFormat;
  /** The container format the image claims; `ova` requires an OVA archive, anything else a bare disk. */
  container?: ContainerFormat;
}

/**
 * Inspects an image's content before visor converts it or uploads it anywhere, following the
 * rules Glance adopted after CVE-2022-47951 and CVE-2024-32498: the content's format must be the
 * declared one, and it must not make qemu (or a cloud) open any other file — no qcow2 backing
 * or external data file, no VMDK extent but the file itself, no differencing VHD/VHDX/VDI, no
 * header of one format hidden inside another. Refusals are `unsafe` errors; truncated or garbled
 * headers are `invalidInput`; formats visor cannot handle are `unsupported`. Every reason found is
 * named in the one error thrown.
 */
export async function inspectImage(reader: ImageReader, options: InspectOptions = {}): Promise<InspectionReport> {
  return inspect(reader, options, 0);
}

async function inspect(source: ImageReader, options: InspectOptions, depth: number): Promise<InspectionReport> {
  const reader = countingReader(source);
  const detection = await detectFormat(reader);
  const problems = [...checkFormat(detection, options, depth), ...detection.problems];
  throwIfProblems(problems, detection.format);

  if (detection.format !== 'ova') {
    return {
      format: detection.format as DiskFormat,
      containerFormat: 'bare',
      size: reader.size,
      ...facts(detection),
      bytesRead: reader.bytesRead,
    };
  }
  const members: InspectedMember[] = [];
  for (const file of detection.ova?.files ?? []) {
    if (
      file.disk &&
      options.declared !== undefined &&
      file.expected !== undefined &&
      !sameFormat(options.declared, expectedContent(file.expected))
    ) {
      throw new VisorError(
        'unsafe',
        `unsafe image: the OVF descriptor says disk ${JSON.stringify(file.href)} is ${file.expected}, ` +
          `the image declares ${options.declared}`,
      );
    }
    const declared = file.disk ? (options.declared ?? file.expected) : undefined;
    try {
      const report = await inspect(
        tarMemberReader(reader, file.member),
        declared === undefined ? {} : { declared },
        depth + 1,
      );
      members.push({ name: file.member.name, disk: file.disk, report });
    } catch (error) {
      if (!isVisorError(error)) throw error;
      throw new VisorError(error.kind, `OVA member ${JSON.stringify(file.member.name)}: ${error.message}`, {
        cause: error,
        ...(error.details ? { details: error.details } : {}),
      });
    }
  }
  const primary = members.find((m) => m.disk)!.report;
  return {
    format: primary.format,
    containerFormat: 'ova',
    size: reader.size,
    ...(primary.virtualSize === undefined ? {} : { virtualSize: primary.virtualSize }),
    ...(primary.subformat === undefined ? {} : { subformat: primary.subformat }),
    details: detection.details,
    members,
    bytesRead: reader.bytesRead,
  };
}

/** The declared-versus-detected rules, and the formats refused whatever was declared. */
function checkFormat(detection: Detection, options: InspectOptions, depth: number): Problem[] {
  const { format, matches } = detection;
  if (matches.length > 1) return []; // already refused by detection, naming every match
  if (refusedFormats.has(format)) return [{ kind: 'unsafe', reason: `${describe(format)} images are not accepted` }];
  const problems: Problem[] = [];
  if (format === 'ova') {
    if (depth > 0) problems.push({ kind: 'unsafe', reason: 'an OVA nested inside an OVA is not accepted' });
    else if (options.container !== undefined && options.container !== 'ova')
      problems.push({
        kind: 'unsafe',
        reason: `declared container format ${options.container}, but the content is an OVA archive`,
      });
    else if (options.container === undefined && options.declared !== undefined)
      problems.push({
        kind: 'unsafe',
        reason:
          `declared disk format ${options.declared}, ` +
          `but the content is an OVA archive (declare container format ova)`,
      });
    return problems;
  }
  if (options.container === 'ova')
    problems.push({
      kind: 'unsafe',
      reason: `declared container format ova, but the content is ${describe(format)}, not an OVA archive`,
    });
  if (options.declared !== undefined && !sameFormat(options.declared, format)) {
    const smuggled = expectedContent(options.declared) === 'raw' && format !== 'iso';
    problems.push({
      kind: 'unsafe',
      reason: `declared ${options.declared}, but the content is ${describe(format)}${
        smuggled ? ' (a format header inside an image declared raw could make qemu or a cloud open other files)' : ''
      }`,
    });
  }
  return problems;
}

/** What the content of an image declared `declared` must be detected as. */
function expectedContent(declared: DiskFormat): DetectedFormat {
  // AMI machine images are raw disks; kernels and ramdisks match no disk format either.
  return declared === 'ami' || declared === 'aki' || declared === 'ari' ? 'raw' : declared;
}

function sameFormat(declared: DiskFormat, detected: DetectedFormat): boolean {
  return expectedContent(declared) === detected;
}

function describe(format: DetectedFormat): string {
  switch (format) {
    case 'raw':
      return 'raw data';
    case 'ova':
      return 'an OVA archive';
    case 'qcow':
      return 'qcow version 1';
    case 'luks':
      return 'LUKS-encrypted';
    case 'qed':
      return 'QED';
    default:
      return format;
  }
}

function facts(
  detection: Detection,
): Pick<InspectionReport, 'virtualSize' | 'subformat' | 'partitionTable' | 'details'> {
  return {
    ...(detection.virtualSize === undefined ? {} : { virtualSize: detection.virtualSize }),
    ...(detection.subformat === undefined ? {} : { subformat: detection.subformat }),
    ...(detection.partitionTable === undefined ? {} : { partitionTable: detection.partitionTable }),
    details: detection.details,
  };
}

const kindOrder: Problem['kind'][] = ['unsafe', 'invalidInput', 'unsupported'];
const kindLabel: Record<Problem['kind'], string> = {
  unsafe: 'unsafe image',
  invalidInput: 'invalid image',
  unsupported: 'unsupported image',
};

/** One error naming every problem; its kind is the gravest one found. */
function throwIfProblems(problems: Problem[], format: DetectedFormat): void {
  if (problems.length === 0) return;
  const kind = kindOrder.find((k) => problems.some((p) => p.kind === k))!;
  const reasons = [...new Set(problems.map((p) => p.reason))];
  throw new VisorError(kind, `${kindLabel[kind]}: ${reasons.join('; ')}`, { details: { format, problems } });
}
