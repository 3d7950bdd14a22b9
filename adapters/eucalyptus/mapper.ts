import { createHash } from 'node:crypto';
import { ValidationError, VisorError, type FieldIssue } from '../../core/errors.js';
import { markersFromAttributes, markersToAttributes, type MarkerKeys } from '../../core/iaas/markers.js';
import type { CloudImage, CloudImageState, Markers } from '../../core/iaas/port.js';
import type { Architecture, ContainerFormat, DiskFormat, Image, ImageType, OsInfo } from '../../core/image/model.js';
import type { Ec2Image, Ec2ImageState, Ec2ImageType } from '../../core/wire/ec2/schema.js';

/**
 * Pure translation between generic images and EC2 images (README.md has the table). Markers
 * and generic metadata live in tags; where the cloud has no tags they live in a block at the end
 * of the Description. Nothing here calls the cloud.
 */

export const ec2MarkerKeys: MarkerKeys = {
  agent: 'visor:agent',
  target: 'visor:target',
  imageId: 'visor:image-id',
  sha256: 'visor:sha256',
  revision: 'visor:revision',
};
/** Generic fields EC2 has no place for (os, min disk/RAM, virtual size, labels), as one query string. */
export const metaTagKey = 'visor:meta';
/** Present on images retired by `hide`: the time they were hidden. */
export const hiddenTagKey = 'visor:hidden';
/** The display name AWS consoles show; EC2's own Name is immutable and must be unique. */
export const nameTagKey = 'Name';
/** EC2 limits: Description < 256 characters; tag keys up to 127, values up to 255 (Eucalyptus's). */
export const maxDescriptionLength = 255;
export const maxTagKeyLength = 127;
export const maxTagValueLength = 255;

const reservedTagPrefixes = ['visor:', 'aws:', 'euca:'];

/** Tags that are custom properties: anything the adapter does not use itself. */
export function isPropertyTag(key: string): boolean {
  return (
    key !== nameTagKey && key !== 'description' && !reservedTagPrefixes.some((p) => key.toLowerCase().startsWith(p))
  );
}

// ---------------------------------------------------------------------------------------------
// EC2 -> generic
// ---------------------------------------------------------------------------------------------

export function stateOf(state: Ec2ImageState): CloudImageState {
  switch (state) {
    case 'available':
    case 'hidden':
      return 'active';
    case 'pending':
    case 'transient':
      return 'pending';
    case 'disabled':
      return 'disabled';
    case 'deregistered':
      return 'deleted';
    case 'failed':
    case 'error':
    case 'invalid':
    case 'unavailable':
      return 'error';
  }
}

const architectureByEc2: Readonly<Record<string, Architecture>> = {
  i386: 'i386',
  x86_64: 'x86_64',
  arm64: 'aarch64',
  armhf: 'armv7l',
  ppc64: 'ppc64',
  ppc64le: 'ppc64le',
};
const ec2ByArchitecture: Readonly<Partial<Record<Architecture, string>>> = {
  i386: 'i386',
  x86_64: 'x86_64',
  aarch64: 'arm64',
  armv7l: 'armhf',
  ppc64: 'ppc64',
  ppc64le: 'ppc64le',
};

export function architectureOf(ec2: string | undefined): Architecture | undefined {
  return ec2 === undefined ? undefined : architectureByEc2[ec2];
}

export function ec2ArchitectureOf(architecture: Architecture): string {
  const ec2 = ec2ByArchitecture[architecture];
  if (ec2 === undefined)
    throw new VisorError(
      'unsupported',
      `eucalyptus: EC2 has no architecture for ${architecture} (i386, ` +
        `x86_64, aarch64 as arm64; armv7l, ppc64, ppc64le on Eucalyptus)`,
    );
  return ec2;
}

/** Disk and container format a cloud image holds, from its type and virtualization. */
export function formatsOf(image: Pick<Ec2Image, 'type' | 'virtualizationType' | 'rootDeviceType'>): {
  diskFormat?: DiskFormat;
  containerFormat?: ContainerFormat;
} {
  if (image.type === 'kernel') return { diskFormat: 'aki', containerFormat: 'aki' };
  if (image.type === 'ramdisk') return { diskFormat: 'ari', containerFormat: 'ari' };
  // EBS-backed images are snapshots, not bundles of a disk file: no generic format describes them.
  if (image.rootDeviceType === 'ebs') return {};
  if (image.virtualizationType === 'hvm') return { diskFormat: 'raw', containerFormat: 'bare' };
  return { diskFormat: 'ami', containerFormat: 'ami' };
}

const genericTypeOf = (type: Ec2ImageType | undefined): ImageType | undefined => type;

/** The `visor:meta` tag: os, min disk/RAM, virtual size and labels as a query string. */
export function encodeMeta(image: Pick<Image, 'os' | 'minDisk' | 'minRam' | 'virtualSize' | 'tags'>): string {
  const params = new URLSearchParams();
  if (image.os?.type !== undefined) params.append('os-type', image.os.type);
  if (image.os?.distro !== undefined) params.append('os-distro', image.os.distro);
  if (image.os?.version !== undefined) params.append('os-version', image.os.version);
  if (image.minDisk !== undefined) params.append('min-disk', String(image.minDisk));
  if (image.minRam !== undefined) params.append('min-ram', String(image.minRam));
  if (image.virtualSize !== undefined) params.append('virtual-size', String(image.virtualSize));
  for (const tag of image.tags) params.append('tag', tag);
  return params.toString();
}

const count = (value: string | null): number | undefined =>
  value !== null && /^\d{1,15}$/.test(value) ? Number(value) : undefined;

export function decodeMeta(
  value: string | undefined,
): Pick<CloudImage['metadata'], 'os' | 'minDisk' | 'minRam' | 'virtualSize' | 'tags'> {
  if (value === undefined) return {};
  const params = new URLSearchParams(value);
  const os: OsInfo = {};
  const type = params.get('os-type');
  const distro = params.get('os-distro');
  const version = params.get('os-version');
  if (type) os.type = type;
  if (distro) os.distro = distro;
  if (version) os.version = version;
  const minDisk = count(params.get('min-disk'));
  const minRam = count(params.get('min-ram'));
  const virtualSize = count(params.get('virtual-size'));
  const tags = [...new Set(params.getAll('tag').filter((t) => t !== ''))];
  return {
    ...(Object.keys(os).length > 0 ? { os } : {}),
    ...(minDisk !== undefined ? { minDisk } : {}),
    ...(minRam !== undefined ? { minRam } : {}),
    ...(virtualSize !== undefined ? { virtualSize } : {}),
    ...(tags.length > 0 ? { tags } : {}),
  };
}

// The Description block used where the cloud has no tags: "<description> [visor k=v ...]".
const blockPattern = /(?:^|\s)\[visor ([^\]]*)\]$/;

export interface DescriptionBlock {
  markers?: Markers;
  name?: string;
  hidden: boolean;
  /** The description without the block. */
  text?: string;
}

export function parseDescription(description: string | undefined): DescriptionBlock {
  if (description === undefined) return { hidden: false };
  const match = blockPattern.exec(description);
  if (!match) return { hidden: false, text: description };
  const fields: Record<string, string> = {};
  for (const pair of (match[1] ?? '').split(' ')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    try {
      fields[pair.slice(0, eq)] = decodeURIComponent(pair.slice(eq + 1));
    } catch {
      // A hand-edited, undecodable value: the block is not trusted (markers come out undefined).
    }
  }
  const keys = { agent: 'agent', target: 'target', imageId: 'image-id', sha256: 'sha256', revision: 'revision' };
  const markers = markersFromAttributes(fields, keys);
  const text = description.slice(0, match.index).trimEnd();
  return {
    ...(markers ? { markers } : {}),
    ...(fields['name'] !== undefined ? { name: fields['name'] } : {}),
    hidden: fields['hidden'] === '1',
    ...(text !== '' ? { text } : {}),
  };
}

export interface ReadExtras {
  /** Unbundled image size from the bundle manifest, when it could be read. */
  size?: number;
  /** Instances (not terminated) run from the image, as DescribeInstances says; unknown when absent. */
  instances?: readonly string[];
}

export function toCloudImage(image: Ec2Image, extras: ReadExtras = {}): CloudImage {
  const block = parseDescription(image.description);
  const markers = markersFromAttributes(image.tags, ec2MarkerKeys) ?? block.markers;
  const name = image.tags[nameTagKey] ?? block.name ?? image.name ?? image.id;
  const architecture = architectureOf(image.architecture);
  const type = genericTypeOf(image.type);
  const properties: Record<string, string> = {};
  for (const [key, value] of Object.entries(image.tags)) if (isPropertyTag(key)) properties[key] = value;
  if (block.text !== undefined) properties['description'] = block.text;
  return {
    nativeId: image.id,
    name,
    state: stateOf(image.state),
    hidden: image.tags[hiddenTagKey] !== undefined || block.hidden || image.state === 'hidden',
    // From DescribeInstances (image-id filter); where the cloud cannot tell, DeregisterImage's refusal
    // (InvalidAMIID.Unavailable on Eucalyptus) is the only guard.
    inUse: (extras.instances?.length ?? 0) > 0,
    access: image.isPublic ? 'public' : 'private',
    ...formatsOf(image),
    ...(extras.size !== undefined ? { size: extras.size } : {}),
    checksums: {},
    ...(markers ? { markers } : {}),
    metadata: {
      name,
      ...(architecture ? { architecture } : {}),
      ...(type ? { type } : {}),
      tags: [],
      ...decodeMeta(image.tags[metaTagKey]),
      properties,
    },
    ...(image.createdAt !== undefined && !Number.isNaN(Date.parse(image.createdAt))
      ? { createdAt: new Date(image.createdAt).toISOString() }
      : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// generic -> EC2
// ---------------------------------------------------------------------------------------------

const shortHash = (text: string, length: number) => createHash('sha256').update(text).digest('hex').slice(0, length);

/**
 * The bundle's file-name prefix: the same for the same agent, catalog image and content, so a
 * retried create finds the parts it already sent (and a replace, with other content, does not).
 */
export function bundleNameOf(markers: Pick<Markers, 'agent' | 'target' | 'imageId' | 'sha256'>): string {
  // Two targets of one agent in one account must not share (or adopt) each other's bundles.
  const owner = markers.target === undefined ? markers.agent : `${markers.agent}\n${markers.target}`;
  return `visor-${shortHash(owner, 8)}-${markers.imageId}-${markers.sha256.slice(0, 16)}`;
}

/**
 * EC2's Name: 3-128 of [A-Za-z0-9()./_-] (Eucalyptus; AWS allows a superset), unique among the
 * account's registered images. The generic name, other characters as `_`, plus the catalog id
 * and content hash, so that a replace (new content) can be registered beside the old image.
 */
export function ec2NameOf(image: Pick<Image, 'name' | 'id'>, markers: Pick<Markers, 'sha256' | 'target'>): string {
  // The target's hash keeps two targets of one account (same catalog image and content) apart.
  const target = markers.target === undefined ? '' : `-${shortHash(markers.target, 4)}`;
  const suffix = `-${image.id.slice(0, 8)}-${markers.sha256.slice(0, 8)}${target}`;
  const base = image.name.replace(/[^A-Za-z0-9()./_-]/g, '_').slice(0, 128 - suffix.length);
  return `${base}${suffix}`;
}

export interface RegistrationOptions {
  /** EKI / ERI for paravirtual (ami) machine images. */
  kernelId?: string | undefined;
  ramdiskId?: string | undefined;
  /** Markers and metadata in tags (true) or in the Description (false). */
  tags: boolean;
}

export interface Registration {
  /** EC2 Name (immutable, unique). */
  ec2Name: string;
  description?: string;
  architecture: string;
  /** Manifest <type>. */
  type: Ec2ImageType;
  /** RegisterImage parameters beyond ImageLocation. */
  kernelId?: string;
  ramdiskId?: string;
  virtualizationType?: 'hvm' | 'paravirtual';
  /** Manifest machine_configuration values (Eucalyptus marks kernels and ramdisks with "true"). */
  manifestKernelId?: string;
  manifestRamdiskId?: string;
}

export const acceptedDiskFormats: readonly DiskFormat[] = ['raw', 'ami', 'aki', 'ari'];
export const acceptedContainerFormats: readonly ContainerFormat[] = ['bare', 'ami', 'aki', 'ari'];

/** How a generic image is registered; refuses (before anything is created) what EC2 cannot take. */
export function registrationOf(
  image: Image,
  markers: Markers,
  diskFormat: DiskFormat,
  options: RegistrationOptions,
): Registration {
  const architecture = ec2ArchitectureOf(image.architecture);
  const description = descriptionOf(image, markers, options.tags, false);
  const base = {
    ec2Name: ec2NameOf(image, markers),
    ...(description !== undefined ? { description } : {}),
    architecture,
  };
  switch (image.type) {
    case 'kernel':
      if (diskFormat !== 'aki' && diskFormat !== 'raw') break;
      return { ...base, type: 'kernel', manifestKernelId: 'true' };
    case 'ramdisk':
      if (diskFormat !== 'ari' && diskFormat !== 'raw') break;
      return { ...base, type: 'ramdisk', manifestRamdiskId: 'true' };
    case 'machine':
      // A whole disk with its own boot loader boots as HVM; an AMI-style partition image needs a kernel.
      if (diskFormat === 'raw') return { ...base, type: 'machine', virtualizationType: 'hvm' };
      if (diskFormat !== 'ami') break;
      if (options.kernelId === undefined || options.ramdiskId === undefined) {
        throw new VisorError(
          'invalidInput',
          `eucalyptus: image ${image.id} is an ami (paravirtual) image; ` +
            `set the kernelId and ramdiskId options (EKI/ERI) or give a raw disk`,
        );
      }
      return {
        ...base,
        type: 'machine',
        virtualizationType: 'paravirtual',
        kernelId: options.kernelId,
        ramdiskId: options.ramdiskId,
        manifestKernelId: options.kernelId,
        manifestRamdiskId: options.ramdiskId,
      };
  }
  throw new VisorError(
    'unsupported',
    `eucalyptus: a ${image.type} image cannot be registered from ${diskFormat} content`,
    { details: { type: image.type, diskFormat } },
  );
}

/**
 * Every tag the adapter owns on an image: markers, display name, metadata, custom properties,
 * and the hidden stamp when given. Refuses what EC2 cannot store, naming every bad field.
 */
export function tagsOf(image: Image, markers: Markers, hiddenAt?: string): Record<string, string> {
  const issues: FieldIssue[] = [];
  const tags: Record<string, string> = { ...markersToAttributes(markers, ec2MarkerKeys), [nameTagKey]: image.name };
  const meta = encodeMeta(image);
  if (meta !== '') tags[metaTagKey] = meta;
  if (hiddenAt !== undefined) tags[hiddenTagKey] = hiddenAt;
  for (const [key, value] of Object.entries(image.properties)) {
    if (key === 'description') continue;
    if (!isPropertyTag(key))
      issues.push({
        path: `properties.${key}`,
        message: `is reserved on EC2 (Name and the visor:, aws:, euca: prefixes)`,
      });
    else if (key.length > maxTagKeyLength)
      issues.push({ path: `properties.${key}`, message: `EC2 tag keys are at most ${maxTagKeyLength} characters` });
    tags[key] = value;
  }
  for (const [key, value] of Object.entries(tags)) {
    if (value.length > maxTagValueLength) {
      const path =
        key === metaTagKey
          ? 'os, minDisk, minRam, virtualSize and tags together'
          : key === nameTagKey
            ? 'name'
            : `properties.${key}`;
      issues.push({
        path,
        message: `EC2 tag values are at most ${maxTagValueLength} characters (this is ${value.length})`,
      });
    }
  }
  const description = image.properties['description'];
  if (description !== undefined && description.length > maxDescriptionLength)
    issues.push({
      path: 'properties.description',
      message: `EC2 descriptions are at most ${maxDescriptionLength} characters`,
    });
  if (issues.length > 0)
    throw new ValidationError('invalidInput', `image ${image.id} cannot be written to EC2`, issues);
  return tags;
}

/**
 * The Description: the generic `description` property, and, without tags, the marker block
 * (markers, name, hidden) after it.
 */
export function descriptionOf(image: Image, markers: Markers, tags: boolean, hidden: boolean): string | undefined {
  const text = image.properties['description'];
  if (tags) return text;
  const fields = [
    `agent=${encodeURIComponent(markers.agent)}`,
    ...(markers.target !== undefined ? [`target=${markers.target}`] : []),
    `image-id=${markers.imageId}`,
    `sha256=${markers.sha256}`,
    `revision=${markers.revision}`,
    `name=${encodeURIComponent(image.name)}`,
    ...(hidden ? ['hidden=1'] : []),
  ];
  const block = `[visor ${fields.join(' ')}]`;
  const full = text !== undefined && text !== '' ? `${text.replace(/\s+$/, '')} ${block}` : block;
  if (full.length > maxDescriptionLength) {
    throw new ValidationError('invalidInput', `image ${image.id} cannot be written to EC2`, [
      {
        path: 'properties.description',
        message:
          `without tags, the description and visor's marker block must fit ` +
          `EC2's ${maxDescriptionLength} characters (they take ${full.length})`,
      },
    ]);
  }
  return full;
}

/** The tag changes that turn `current` into `desired`, touching only tags the adapter owns. */
export function tagChanges(
  current: Readonly<Record<string, string>>,
  desired: Readonly<Record<string, string>>,
): { set: Record<string, string>; remove: string[] } {
  const set: Record<string, string> = {};
  for (const [key, value] of Object.entries(desired)) if (current[key] !== value) set[key] = value;
  const owned = (key: string) => key === nameTagKey || key.startsWith('visor:') || isPropertyTag(key);
  const remove = Object.keys(current).filter(
    (key) =>
      owned(key) &&
      !(key in desired) &&
      !key.toLowerCase().startsWith('aws:') &&
      !key.toLowerCase().startsWith('euca:'),
  );
  return { set, remove };
}
