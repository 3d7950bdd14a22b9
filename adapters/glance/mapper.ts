import { VisorError } from '../../core/errors.js';
import { defaultMarkerKeys, isMarkerKey, markersFromAttributes, markersToAttributes } from '../../core/iaas/markers.js';
import type { CloudImage, CloudImageState, Markers } from '../../core/iaas/port.js';
import {
  architectures,
  containerFormats,
  diskFormats,
  imageTypes,
  type Access,
  type Architecture,
  type Checksums,
  type ContainerFormat,
  type DiskFormat,
  type Image,
  type ImageType,
  type OsInfo,
} from '../../core/image/model.js';
import type { GlanceImage } from './schema.js';

/**
 * Pure translation between Glance v2 image entities and visor's generic terms, both ways.
 * Glance keeps its base fields and the free-form ("additional") properties side by side in
 * one JSON object, so the mapper must know which keys are base fields; everything else that is
 * a string is a property.
 */

/** Glance's default `disk_formats` (the image format options of Glance's common config); all generic formats. */
export const glanceDiskFormats: readonly DiskFormat[] = [
  'ami',
  'ari',
  'aki',
  'vhd',
  'vhdx',
  'vmdk',
  'raw',
  'qcow2',
  'vdi',
  'iso',
  'ploop',
];
/** Glance's default `container_formats` that the generic model knows (not docker, compressed). */
export const glanceContainerFormats: readonly ContainerFormat[] = ['bare', 'ovf', 'ova', 'ami', 'aki', 'ari'];

/** Base (schema) fields of a Glance v2 image: never free-form properties. */
export const glanceBaseKeys: ReadonlySet<string> = new Set([
  'id',
  'name',
  'status',
  'visibility',
  'protected',
  'os_hidden',
  'checksum',
  'os_hash_algo',
  'os_hash_value',
  'owner',
  'size',
  'virtual_size',
  'min_ram',
  'min_disk',
  'container_format',
  'disk_format',
  'created_at',
  'updated_at',
  'tags',
  'direct_url',
  'locations',
  'self',
  'file',
  'schema',
  'stores',
  'deleted',
  'deleted_at',
  'member_status',
]);

/** Glance properties that carry generic fields (so they are not free-form properties). */
export const mappedPropertyKeys = {
  architecture: 'architecture',
  osType: 'os_type',
  osDistro: 'os_distro',
  osVersion: 'os_version',
  kernelId: 'kernel_id',
  ramdiskId: 'ramdisk_id',
  /** Only written when the disk format (aki/ari) does not already say it. */
  type: 'visor_type',
} as const;
const mappedKeys: ReadonlySet<string> = new Set(Object.values(mappedPropertyKeys));

/** Properties Glance or other OpenStack services own: never written, never removed by visor. */
const foreignPrefixes = ['os_glance', 'owner_specified.'];

export const isReservedKey = (key: string) => key.startsWith('os_glance');

/** A Glance image seen through generic eyes; metadata also carries kernel and ramdisk ids. */
export type GlanceCloudImage = CloudImage & {
  metadata: CloudImage['metadata'] & Partial<Pick<Image, 'kernelId' | 'ramdiskId'>>;
};

const statusToState: Record<GlanceImage['status'], CloudImageState> = {
  queued: 'pending',
  saving: 'pending',
  uploading: 'pending',
  importing: 'pending',
  active: 'active',
  deactivated: 'disabled',
  killed: 'error',
  deleted: 'deleted',
  pending_delete: 'deleted',
};

const visibilityToAccess: Record<GlanceImage['visibility'], Access> = {
  public: 'public',
  private: 'private',
  shared: 'shared',
  // Readable by every project, only not listed by default: the generic model calls that public.
  community: 'public',
};

const architectureAliases: Readonly<Record<string, Architecture>> = {
  amd64: 'x86_64',
  'x86-64': 'x86_64',
  x64: 'x86_64',
  arm64: 'aarch64',
  i686: 'i386',
  i586: 'i386',
  x86: 'i386',
  armhf: 'armv7l',
};

export function parseArchitecture(value: unknown): Architecture | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim().toLowerCase();
  return (architectures as readonly string[]).includes(v) ? (v as Architecture) : architectureAliases[v];
}

const isOneOf = <T extends string>(list: readonly T[], value: unknown): value is T =>
  typeof value === 'string' && (list as readonly string[]).includes(value);

/** Glance image JSON -> CloudImage. */
export function toCloudImage(glance: GlanceImage): GlanceCloudImage {
  const attributes = glance as Record<string, unknown>;
  const str = (key: string) =>
    typeof attributes[key] === 'string' && attributes[key] !== '' ? (attributes[key] as string) : undefined;

  const properties: Record<string, string> = {};
  for (const [key, value] of Object.entries(attributes)) {
    if (glanceBaseKeys.has(key) || mappedKeys.has(key) || isReservedKey(key) || isMarkerKey(key)) continue;
    // Non-string extras are base fields of a newer Glance API than this mapper knows.
    if (typeof value === 'string') properties[key] = value;
  }

  const os: OsInfo = {};
  const osType = str(mappedPropertyKeys.osType);
  const osDistro = str(mappedPropertyKeys.osDistro);
  const osVersion = str(mappedPropertyKeys.osVersion);
  if (osType) os.type = osType;
  if (osDistro) os.distro = osDistro;
  if (osVersion) os.version = osVersion;

  const architecture = parseArchitecture(attributes[mappedPropertyKeys.architecture]);
  const kernelId = str(mappedPropertyKeys.kernelId);
  const ramdiskId = str(mappedPropertyKeys.ramdiskId);
  const markers = markersFromAttributes(attributes);
  const diskFormat = isOneOf(diskFormats, glance.disk_format) ? glance.disk_format : undefined;
  const containerFormat = isOneOf(containerFormats, glance.container_format) ? glance.container_format : undefined;

  return {
    nativeId: glance.id,
    name: glance.name ?? '',
    state: statusToState[glance.status],
    hidden: glance.os_hidden ?? false,
    // Glance does not know which servers were booted from an image.
    inUse: false,
    access: visibilityToAccess[glance.visibility],
    ...(diskFormat ? { diskFormat } : {}),
    ...(containerFormat ? { containerFormat } : {}),
    ...(typeof glance.size === 'number' ? { size: glance.size } : {}),
    checksums: checksumsOf(glance),
    ...(markers ? { markers } : {}),
    metadata: {
      ...(glance.name ? { name: glance.name } : {}),
      ...(architecture ? { architecture } : {}),
      type: typeOf(glance.disk_format, attributes[mappedPropertyKeys.type]),
      ...(typeof glance.min_disk === 'number' ? { minDisk: glance.min_disk } : {}),
      ...(typeof glance.min_ram === 'number' ? { minRam: glance.min_ram } : {}),
      ...(Object.keys(os).length > 0 ? { os } : {}),
      tags: [...(glance.tags ?? [])],
      properties,
      ...(typeof glance.virtual_size === 'number' ? { virtualSize: glance.virtual_size } : {}),
      ...(kernelId ? { kernelId } : {}),
      ...(ramdiskId ? { ramdiskId } : {}),
    },
    ...(glance.created_at ? { createdAt: glance.created_at } : {}),
    ...(glance.updated_at ? { updatedAt: glance.updated_at } : {}),
  };
}

/** `checksum` is md5; the multihash (`os_hash_algo`/`os_hash_value`) is sha512 unless configured otherwise. */
export function checksumsOf(glance: GlanceImage): Checksums {
  const out: Checksums = {};
  if (typeof glance.checksum === 'string' && /^[0-9a-f]{32}$/i.test(glance.checksum))
    out.md5 = glance.checksum.toLowerCase();
  const algo = glance.os_hash_algo?.toLowerCase();
  const value = glance.os_hash_value?.toLowerCase();
  const lengths: Record<string, number> = { md5: 32, sha256: 64, sha512: 128 };
  if (algo && value && lengths[algo] === value.length && /^[0-9a-f]+$/.test(value))
    out[algo as keyof Checksums] = value;
  return out;
}

function typeOf(diskFormat: string | null | undefined, property: unknown): ImageType {
  if (diskFormat === 'aki') return 'kernel';
  if (diskFormat === 'ari') return 'ramdisk';
  return isOneOf(imageTypes, property) ? property : 'machine';
}

export const accessToVisibility: Record<Access, 'public' | 'private' | 'shared'> = {
  public: 'public',
  private: 'private',
  shared: 'shared',
};

/** The free-form and generic-mapped properties a Glance image should carry, markers included. */
export function desiredProperties(
  image: Image,
  markers: Markers,
  diskFormat: DiskFormat | undefined,
): Record<string, string> {
  const clashes = Object.keys(image.properties).filter(
    (key) =>
      glanceBaseKeys.has(key) ||
      mappedKeys.has(key) ||
      isMarkerKey(key) ||
      foreignPrefixes.some((p) => key.startsWith(p)),
  );
  if (clashes.length > 0) {
    throw new VisorError(
      'invalidInput',
      `image ${image.id}: ${clashes.map((k) => `property "${k}"`).join(', ')} cannot be written to Glance: ` +
        `the name is a Glance field, a field visor maps, a marker or reserved by Glance`,
      {
        details: { properties: clashes },
      },
    );
  }
  const out: Record<string, string> = { ...image.properties, [mappedPropertyKeys.architecture]: image.architecture };
  if (image.os?.type) out[mappedPropertyKeys.osType] = image.os.type;
  if (image.os?.distro) out[mappedPropertyKeys.osDistro] = image.os.distro;
  if (image.os?.version) out[mappedPropertyKeys.osVersion] = image.os.version;
  if (image.kernelId) out[mappedPropertyKeys.kernelId] = image.kernelId;
  if (image.ramdiskId) out[mappedPropertyKeys.ramdiskId] = image.ramdiskId;
  if (typeOf(diskFormat, undefined) !== image.type) out[mappedPropertyKeys.type] = image.type;
  return { ...out, ...markersToAttributes(markers, defaultMarkerKeys) };
}

/** Body of POST /v2/images for a generic image, its markers and the format of its bits. */
export function toCreateBody(
  image: Image,
  markers: Markers,
  format: { diskFormat: DiskFormat; containerFormat: ContainerFormat },
): Record<string, unknown> {
  return {
    name: image.name,
    disk_format: format.diskFormat,
    container_format: format.containerFormat,
    visibility: accessToVisibility[image.access],
    min_disk: image.minDisk ?? 0,
    min_ram: image.minRam ?? 0,
    tags: [...image.tags],
    ...desiredProperties(image, markers, format.diskFormat),
  };
}

export interface PatchOperation {
  op: 'add' | 'replace' | 'remove';
  path: string;
  value?: unknown;
}

/** JSON pointer of a top-level key (RFC 6901: `~` and `/` escaped). */
export const pointer = (key: string) => `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;

/**
 * JSON-patch (media type application/openstack-images-v2.1-json-patch) that turns `current`
 * into the image described by `image` + `markers`, without touching the bits or the formats.
 * In v2.1, `add` sets a property whether or not it exists (`replace` of a missing one is a 409).
 * Properties that no longer belong are removed, except those that Glance or other OpenStack
 * services own (os_glance*, owner_specified.*).
 */
export function toPatch(current: GlanceImage, image: Image, markers: Markers): PatchOperation[] {
  const ops: PatchOperation[] = [];
  const attributes = current as Record<string, unknown>;
  const replaceIfChanged = (key: string, value: unknown) => {
    if (attributes[key] !== value) ops.push({ op: 'replace', path: pointer(key), value });
  };
  replaceIfChanged('name', image.name);
  replaceIfChanged('visibility', accessToVisibility[image.access]);
  replaceIfChanged('min_disk', image.minDisk ?? 0);
  replaceIfChanged('min_ram', image.minRam ?? 0);
  // A protected catalog image is protected in Glance too (nobody deletes it there by mistake);
  // clearing the flag in the catalog clears it here before visor may retire the copy.
  replaceIfChanged('protected', image.protected === true);
  const tags = [...image.tags];
  const currentTags = current.tags ?? [];
  if (tags.length !== currentTags.length || tags.some((t) => !currentTags.includes(t)))
    ops.push({ op: 'replace', path: '/tags', value: tags });

  const diskFormat = isOneOf(diskFormats, current.disk_format) ? current.disk_format : undefined;
  const desired = desiredProperties(image, markers, diskFormat);
  for (const [key, value] of Object.entries(desired)) {
    if (attributes[key] !== value) ops.push({ op: 'add', path: pointer(key), value });
  }
  for (const [key, value] of Object.entries(attributes)) {
    if (key in desired || glanceBaseKeys.has(key) || typeof value !== 'string') continue;
    if (foreignPrefixes.some((p) => key.startsWith(p))) continue;
    ops.push({ op: 'remove', path: pointer(key) });
  }
  return ops;
}

export { isOneOf };
