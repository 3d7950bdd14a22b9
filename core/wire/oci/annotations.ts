import { type MarkerKeys, markersFromAttributes, markersToAttributes } from '../../iaas/markers.js';
import type { Markers } from '../../iaas/port.js';
import {
  type Architecture,
  architectures,
  type DiskFormat,
  diskFormats,
  type Image,
  type ImageType,
  imageTypes,
  type OsInfo,
} from '../../image/model.js';

/**
 * Visor's image metadata as OCI annotations and back, after the conventions EGI's images use
 * (pushed with `oras push`): Glance's own property names under `org.openstack.glance.`, the
 * title under `org.opencontainers.image.title`, so that any ORAS-based tool that feeds Glance
 * reads what visor publishes, and visor reads what they publish. What Glance has no name for
 * (tags, image type, visor's ownership markers) goes under `org.visor.`.
 */
export const annotationKeys = {
  title: 'org.opencontainers.image.title',
  created: 'org.opencontainers.image.created',
  description: 'org.opencontainers.image.description',
  glance: 'org.openstack.glance.',
  egiTag: 'eu.egi.cloud.tag',
  tags: 'org.visor.tags',
  type: 'org.visor.type',
  /** The tag the manifest was made for: no two tags of visor's ever share a manifest (a delete takes all). */
  tag: 'org.visor.tag',
} as const;

export const ociMarkerKeys: MarkerKeys = {
  agent: 'org.visor.agent',
  target: 'org.visor.target',
  imageId: 'org.visor.image-id',
  sha256: 'org.visor.sha256',
  revision: 'org.visor.revision',
};

/** Glance property names that are fields of visor's image, not free-form properties. */
const glanceFields = [
  'disk_format',
  'container_format',
  'architecture',
  'os_distro',
  'os_version',
  'os_type',
  'min_disk',
  'min_ram',
];
const glance = (name: string) => `${annotationKeys.glance}${name}`;
const propertyKey = /^[A-Za-z0-9_.:-]{1,200}$/;

/** The annotations of an image's manifest. */
export function imageAnnotations(image: Image, diskFormat: DiskFormat, markers?: Markers): Record<string, string> {
  const out: Record<string, string> = {
    [annotationKeys.title]: image.name,
    [annotationKeys.created]: image.createdAt,
    [glance('disk_format')]: diskFormat,
    [glance('container_format')]: 'bare',
    [glance('architecture')]: image.architecture,
    [annotationKeys.type]: image.type,
  };
  if (image.os?.distro) out[glance('os_distro')] = image.os.distro;
  if (image.os?.version) out[glance('os_version')] = image.os.version;
  if (image.os?.type) out[glance('os_type')] = image.os.type;
  if (image.minDisk !== undefined) out[glance('min_disk')] = String(image.minDisk);
  if (image.minRam !== undefined) out[glance('min_ram')] = String(image.minRam);
  if (image.tags.length > 0) out[annotationKeys.tags] = JSON.stringify(image.tags);
  for (const [key, value] of Object.entries(image.properties)) {
    if (propertyKey.test(key) && !glanceFields.includes(key)) out[glance(key)] = value;
  }
  if (markers) Object.assign(out, markersToAttributes(markers, ociMarkerKeys));
  return out;
}

export interface AnnotatedMetadata {
  name?: string;
  diskFormat?: DiskFormat;
  architecture?: Architecture;
  type?: ImageType;
  os: OsInfo;
  minDisk?: number;
  minRam?: number;
  tags: string[];
  /** Free-form properties: the Glance ones visor has no field for. */
  properties: Record<string, string>;
  markers?: Markers;
}

const oneOf = <T extends string>(values: readonly T[], value: string | undefined): T | undefined =>
  value !== undefined && (values as readonly string[]).includes(value) ? (value as T) : undefined;

/** Metadata read from a manifest's annotations; what is malformed is left out, never guessed. */
export function metadataFromAnnotations(annotations: Readonly<Record<string, string>>): AnnotatedMetadata {
  const get = (key: string) => annotations[key];
  const count = (key: string) => {
    const value = get(key);
    return value !== undefined && /^\d{1,9}$/.test(value) ? Number(value) : undefined;
  };
  const os: OsInfo = {};
  if (get(glance('os_distro'))) os.distro = get(glance('os_distro'))!;
  if (get(glance('os_version'))) os.version = get(glance('os_version'))!;
  if (get(glance('os_type'))) os.type = get(glance('os_type'))!;
  let tags: string[] = [];
  try {
    const parsed = JSON.parse(get(annotationKeys.tags) ?? '[]') as unknown;
    if (Array.isArray(parsed)) tags = parsed.filter((t): t is string => typeof t === 'string').slice(0, 100);
  } catch {
    // Not visor's JSON: no tags rather than a guess.
  }
  const properties: Record<string, string> = {};
  for (const [key, value] of Object.entries(annotations)) {
    if (!key.startsWith(annotationKeys.glance)) continue;
    const name = key.slice(annotationKeys.glance.length);
    if (propertyKey.test(name) && !glanceFields.includes(name)) properties[name] = value;
  }
  const markers = markersFromAttributes(annotations, ociMarkerKeys);
  const name = get(annotationKeys.title);
  const diskFormat = oneOf(diskFormats, get(glance('disk_format')));
  const architecture = oneOf(architectures, get(glance('architecture')));
  const type = oneOf(imageTypes, get(annotationKeys.type));
  const minDisk = count(glance('min_disk'));
  const minRam = count(glance('min_ram'));
  return {
    ...(name ? { name } : {}),
    ...(diskFormat ? { diskFormat } : {}),
    ...(architecture ? { architecture } : {}),
    ...(type ? { type } : {}),
    os,
    ...(minDisk !== undefined ? { minDisk } : {}),
    ...(minRam !== undefined ? { minRam } : {}),
    tags,
    properties,
    ...(markers ? { markers } : {}),
  };
}
