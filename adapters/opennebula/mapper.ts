import { lifecyclePropertyKeys } from '../../core/image/deprecation.js';
import { ValidationError, VisorError, type FieldIssue } from '../../core/errors.js';
import { markersFromAttributes, markersToAttributes, type MarkerKeys } from '../../core/iaas/markers.js';
import type { CloudImage, CloudImageState, Markers } from '../../core/iaas/port.js';
import {
  architectures,
  type Access,
  type Architecture,
  type DiskFormat,
  type Image,
  type ImageType,
  type OsInfo,
} from '../../core/image/model.js';
import { propertyKeyPattern, reservedPropertyKeys } from '../../core/image/schema.js';
import { oneImageStates, type OneImage, type OneImageTypeName, type OnePermissions } from './schema.js';
import { nameProblem, valueProblem } from './mapper-template.js';

/**
 * Pure translation between generic images and OpenNebula IMAGE objects (README.md has the
 * table). Generic metadata lives in the image TEMPLATE as attributes; oned upper-cases attribute
 * names, so custom property keys that are not plain lower-case snake_case are stored hex-encoded
 * under VISOR_PROPERTY_X_<HEX> to come back exactly as they went in.
 */

export const oneMarkerKeys: MarkerKeys = {
  agent: 'VISOR_AGENT',
  target: 'VISOR_TARGET',
  imageId: 'VISOR_IMAGE_ID',
  sha256: 'VISOR_SHA256',
  revision: 'VISOR_REVISION',
};

/** Where each generic field lives in the TEMPLATE. */
export const oneAttributes = {
  description: 'DESCRIPTION',
  architecture: 'ARCH',
  osType: 'OS_TYPE',
  osDistro: 'OS_DISTRO',
  osVersion: 'OS_VERSION',
  minDisk: 'MIN_DISK',
  minRam: 'MIN_RAM',
  virtualSize: 'VIRTUAL_SIZE',
  tags: 'LABELS',
  expired: 'VISOR_EXPIRED',
} as const;

/** Attributes oned or its drivers give a meaning to (img_template.rst, Image.cc): never custom properties. */
const nativeAttributes: ReadonlySet<string> = new Set([
  'NAME',
  'TYPE',
  'PERSISTENT',
  'PERSISTENT_TYPE',
  'DEV_PREFIX',
  'TARGET',
  'DRIVER',
  'FORMAT',
  'FS',
  'FSTYPE',
  'PATH',
  'SOURCE',
  'SIZE',
  'READONLY',
  'MD5',
  'SHA1',
  'ERROR',
  'LUKS_SECRET',
  'DISK_TYPE',
  'TM_MAD',
  'CLONE_TARGET',
  'LN_TARGET',
  'SAVED_VM_ID',
  'SAVED_DISK_ID',
  'SAVED_IMAGE_ID',
  'SAVE_AS_HOT',
  'CONTEXT',
  'DATASTORE',
  'DATASTORE_ID',
  'CLUSTERS',
]);
const visorAttributes: ReadonlySet<string> = new Set(Object.values(oneAttributes).filter((a) => a !== 'DESCRIPTION'));
const encodedPropertyPrefix = 'VISOR_PROPERTY_X_';
const plainPropertyKey = /^[a-z][a-z0-9_]*$/;

// visor's life cycle properties keep their plain names (VISOR_LIFECYCLE, ...), readable in Sunstone.
const lifecycleAttributes: ReadonlySet<string> = new Set(lifecyclePropertyKeys.map((key) => key.toUpperCase()));

function isManagedAttribute(name: string): boolean {
  return (
    nativeAttributes.has(name) || visorAttributes.has(name) || name.startsWith('VISOR_') || name.startsWith('VCENTER_')
  );
}

/** The TEMPLATE attribute a custom property is stored under. */
export function propertyAttribute(key: string): string {
  if (key === 'description') return oneAttributes.description;
  const upper = key.toUpperCase();
  if (lifecycleAttributes.has(upper) && lifecyclePropertyKeys.includes(key)) return upper;
  if (plainPropertyKey.test(key) && !isManagedAttribute(upper)) return upper;
  return encodedPropertyPrefix + Buffer.from(key, 'utf8').toString('hex').toUpperCase();
}

/** The custom property a TEMPLATE attribute holds, or undefined when it holds something else. */
export function propertyKeyOf(attribute: string): string | undefined {
  if (attribute === oneAttributes.description) return 'description';
  if (lifecycleAttributes.has(attribute)) return attribute.toLowerCase();
  let key: string;
  if (attribute.startsWith(encodedPropertyPrefix)) {
    const hex = attribute.slice(encodedPropertyPrefix.length);
    if (!/^(?:[0-9A-F]{2})+$/.test(hex)) return undefined;
    key = Buffer.from(hex, 'hex').toString('utf8');
  } else {
    if (isManagedAttribute(attribute)) return undefined;
    key = attribute.toLowerCase();
  }
  // Keys the catalog could not hold (oned allows names such as 2ND_DISK) are not offered as properties.
  return propertyKeyPattern.test(key) && !reservedPropertyKeys.has(key) ? key : undefined;
}

// ---------------------------------------------------------------------------------------------
// ONE -> generic
// ---------------------------------------------------------------------------------------------

export interface ReadOptions {
  /** Name prefix of images retired by `disable` (cloudkeeper-one's EXPIRED_). */
  expiredPrefix: string;
}

export function stateOf(state: number, runningVms: number): { state: CloudImageState; inUse: boolean } {
  const s = oneImageStates;
  const busy = runningVms > 0;
  switch (state) {
    case s.READY:
      return { state: 'active', inUse: busy };
    case s.USED:
    case s.USED_PERS:
      return { state: 'active', inUse: true };
    // CLONE: usable, but oned refuses to delete it while clone operations run.
    case s.CLONE:
      return { state: 'active', inUse: true };
    case s.DISABLED:
      return { state: 'disabled', inUse: busy };
    case s.INIT:
    case s.LOCKED:
      return { state: 'pending', inUse: busy };
    case s.LOCKED_USED:
    case s.LOCKED_USED_PERS:
      return { state: 'pending', inUse: true };
    case s.ERROR:
      return { state: 'error', inUse: busy };
    case s.DELETE:
      return { state: 'deleted', inUse: busy };
    default:
      throw new VisorError('invalidResponse', `opennebula: unknown image state ${state}`);
  }
}

export function accessOf(permissions: OnePermissions): Access {
  if (permissions.OTHER_U) return 'public';
  if (permissions.GROUP_U) return 'shared';
  return 'private';
}

export function diskFormatOf(image: OneImage): DiskFormat | undefined {
  switch (oneTypeName(image.type)) {
    case 'CDROM':
      return 'iso';
    case 'KERNEL':
      return 'aki';
    case 'RAMDISK':
      return 'ari';
    default:
      break;
  }
  const format = image.format.toLowerCase();
  if (format === 'raw' || format === 'qcow2') return format;
  const driver = image.template['DRIVER']?.toLowerCase();
  return driver === 'raw' || driver === 'qcow2' ? driver : undefined;
}

function oneTypeName(type: number): OneImageTypeName | undefined {
  return (['OS', 'CDROM', 'DATABLOCK', 'KERNEL', 'RAMDISK', 'CONTEXT', 'BACKUP', 'FILESYSTEM'] as const)[type];
}

function imageTypeOf(type: number): ImageType | undefined {
  const name = oneTypeName(type);
  if (name === 'KERNEL') return 'kernel';
  if (name === 'RAMDISK') return 'ramdisk';
  return name === 'OS' || name === 'CDROM' || name === 'DATABLOCK' ? 'machine' : undefined;
}

/** The generic name of an image renamed by `disable`: EXPIRED_<time>_<name> gives <name>. */
export function originalName(name: string, expiredPrefix: string): string {
  if (!name.startsWith(expiredPrefix)) return name;
  const match = /^[0-9TZ]+_(.+)$/s.exec(name.slice(expiredPrefix.length));
  return match?.[1] ?? name;
}

const count = (value: string | undefined): number | undefined =>
  value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
const nonEmpty = (value: string | undefined): string | undefined =>
  value === undefined || value === '' ? undefined : value;

export function metadataOf(image: OneImage, options: ReadOptions): CloudImage['metadata'] {
  const t = image.template;
  const arch = t[oneAttributes.architecture];
  const os: OsInfo = {};
  const osType = nonEmpty(t[oneAttributes.osType]);
  const osDistro = nonEmpty(t[oneAttributes.osDistro]);
  const osVersion = nonEmpty(t[oneAttributes.osVersion]);
  if (osType) os.type = osType;
  if (osDistro) os.distro = osDistro;
  if (osVersion) os.version = osVersion;
  const properties: Record<string, string> = {};
  for (const [attribute, value] of Object.entries(t)) {
    const key = propertyKeyOf(attribute);
    // An empty value is how a removed property is written (merge updates cannot delete attributes).
    if (key !== undefined && value !== '') properties[key] = value;
  }
  const tags = [
    ...new Set(
      (t[oneAttributes.tags] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
  ];
  const type = imageTypeOf(image.type);
  const minDisk = count(t[oneAttributes.minDisk]);
  const minRam = count(t[oneAttributes.minRam]);
  const virtualSize = count(t[oneAttributes.virtualSize]);
  return {
    name: originalName(image.name, options.expiredPrefix),
    ...(arch !== undefined && (architectures as readonly string[]).includes(arch)
      ? { architecture: arch as Architecture }
      : {}),
    ...(type ? { type } : {}),
    ...(minDisk !== undefined ? { minDisk } : {}),
    ...(minRam !== undefined ? { minRam } : {}),
    ...(virtualSize !== undefined ? { virtualSize } : {}),
    ...(Object.keys(os).length > 0 ? { os } : {}),
    tags,
    properties,
  };
}

const isoTime = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString();

export function toCloudImage(image: OneImage, options: ReadOptions): CloudImage {
  const { state, inUse } = stateOf(image.state, image.runningVms);
  const markers = markersFromAttributes(image.template, oneMarkerKeys);
  const diskFormat = diskFormatOf(image);
  return {
    nativeId: String(image.id),
    name: image.name,
    state,
    hidden: image.name.startsWith(options.expiredPrefix),
    inUse,
    access: accessOf(image.permissions),
    ...(diskFormat ? { diskFormat } : {}),
    // SIZE is whole MiB (rounded up) and oned computes no checksum: neither is reported as such.
    checksums: {},
    ...(markers ? { markers } : {}),
    metadata: metadataOf(image, options),
    ...(image.regtime > 0 ? { createdAt: isoTime(image.regtime) } : {}),
    ...(image.modtime !== undefined && image.modtime > 0 ? { updatedAt: isoTime(image.modtime) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// generic -> ONE
// ---------------------------------------------------------------------------------------------

export interface WriteOptions {
  /** TYPE for machine images that are not ISOs (OS, or DATABLOCK on sites that register disks so). */
  imageType: 'OS' | 'DATABLOCK';
  persistent: boolean;
  devPrefix?: string | undefined;
}

/** The disk formats each generic type can be registered with, and the ONE TYPE it becomes. */
export function oneTypeFor(
  image: Pick<Image, 'type'>,
  diskFormat: DiskFormat,
  options: Pick<WriteOptions, 'imageType'>,
): OneImageTypeName | undefined {
  switch (image.type) {
    case 'machine':
      if (diskFormat === 'iso') return 'CDROM';
      return diskFormat === 'raw' || diskFormat === 'qcow2' ? options.imageType : undefined;
    case 'kernel':
      return diskFormat === 'aki' || diskFormat === 'raw' ? 'KERNEL' : undefined;
    case 'ramdisk':
      return diskFormat === 'ari' || diskFormat === 'raw' ? 'RAMDISK' : undefined;
  }
}

/**
 * Generic metadata and markers as attributes. With `blankAbsent`, fields the image lacks are
 * written empty: a merge update cannot delete an attribute, and empty reads back as absent.
 */
export function metadataAttributes(image: Image, markers: Markers, blankAbsent: boolean): Record<string, string> {
  const issues: FieldIssue[] = [];
  const out: Record<string, string> = {};
  const put = (attribute: string, value: string | number | undefined, path: string) => {
    const text = value === undefined ? '' : String(value);
    const problem = valueProblem(text);
    if (problem) issues.push({ path, message: problem });
    if (text !== '' || blankAbsent) out[attribute] = text;
  };
  put(oneAttributes.architecture, image.architecture, 'architecture');
  put(oneAttributes.osType, image.os?.type, 'os.type');
  put(oneAttributes.osDistro, image.os?.distro, 'os.distro');
  put(oneAttributes.osVersion, image.os?.version, 'os.version');
  put(oneAttributes.minDisk, image.minDisk, 'minDisk');
  put(oneAttributes.minRam, image.minRam, 'minRam');
  put(oneAttributes.virtualSize, image.virtualSize, 'virtualSize');
  const badTag = image.tags.find((t) => t.includes(','));
  if (badTag !== undefined)
    issues.push({ path: 'tags', message: `tag "${badTag}" contains a comma, which separates OpenNebula LABELS` });
  put(oneAttributes.tags, image.tags.length > 0 ? image.tags.join(',') : undefined, 'tags');
  if (blankAbsent && image.properties['description'] === undefined) out[oneAttributes.description] = '';
  for (const [key, value] of Object.entries(image.properties)) put(propertyAttribute(key), value, `properties.${key}`);
  for (const [attribute, value] of Object.entries(markersToAttributes(markers, oneMarkerKeys)))
    put(attribute, value, `markers.${attribute}`);
  if (issues.length > 0)
    throw new ValidationError('invalidInput', `image ${image.id} cannot be written to OpenNebula`, issues);
  return out;
}

/** Everything one.image.allocate gets except PATH and MD5, which come from the content. */
export function allocationAttributes(
  image: Image,
  markers: Markers,
  diskFormat: DiskFormat,
  options: WriteOptions,
): Record<string, string> {
  const type = oneTypeFor(image, diskFormat, options);
  if (type === undefined) {
    throw new VisorError(
      'unsupported',
      `opennebula: a ${image.type} image cannot be registered from ${diskFormat} content`,
      { details: { type: image.type, diskFormat } },
    );
  }
  const problem = nameProblem(image.name);
  if (problem)
    throw new ValidationError('invalidInput', `image ${image.id} cannot be written to OpenNebula`, [
      { path: 'name', message: problem },
    ]);
  const out: Record<string, string> = { NAME: image.name, TYPE: type, ...metadataAttributes(image, markers, false) };
  if (type === 'OS' || type === 'DATABLOCK' || type === 'CDROM') {
    out['PERSISTENT'] = options.persistent ? 'YES' : 'NO';
    if (options.devPrefix) out['DEV_PREFIX'] = options.devPrefix;
  }
  if (type === 'OS' || type === 'DATABLOCK') {
    out['DRIVER'] = diskFormat;
    out['FORMAT'] = diskFormat;
  }
  return out;
}

/** The merge-update template: the image's metadata, plus blanks for properties it no longer has. */
export function updateAttributes(current: OneImage, image: Image, markers: Markers): Record<string, string> {
  const out = metadataAttributes(image, markers, true);
  for (const attribute of Object.keys(current.template)) {
    if (propertyKeyOf(attribute) !== undefined && out[attribute] === undefined) out[attribute] = '';
  }
  return out;
}

/** one.image.chmod arguments (OWNER_U..OTHER_A, -1 = leave) that give `access` and touch nothing else. */
export function permissionsFor(access: Access): number[] {
  const group = access === 'private' ? 0 : 1;
  const other = access === 'public' ? 1 : 0;
  return [-1, -1, -1, group, -1, -1, other, -1, -1];
}

/** `600`-style octal permissions (as `oneimage chmod` takes them) as the nine chmod arguments. */
export function octalPermissions(octal: string): number[] {
  if (!/^[0-7]{3}$/.test(octal))
    throw new VisorError('config', `opennebula: permissions "${octal}" must be three octal digits, e.g. 600`);
  return [...octal].flatMap((digit) => {
    const bits = Number(digit);
    return [(bits >> 2) & 1, (bits >> 1) & 1, bits & 1];
  });
}

/** EXPIRED_<UTC time>_<name>, cut to oned's 128-character limit. */
export function expiredName(name: string, at: Date, expiredPrefix: string): string {
  const stamp = at
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll('-', '')
    .replaceAll(':', '');
  return `${expiredPrefix}${stamp}_${name}`.slice(0, 128);
}
