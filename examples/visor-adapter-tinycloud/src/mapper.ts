import {
  type CloudImage,
  type Image,
  isMarkerKey,
  type Markers,
  markersFromAttributes,
  markersToAttributes,
} from 'visor';
import type { NewRecord, TinyRecord } from './cloud.js';

/** visor's generic image and markers -> the cloud's record (all metadata as string attributes). */
export function toRecord(image: Image, markers: Markers): NewRecord {
  return {
    name: image.name,
    visibility: image.access === 'public' ? 'public' : 'private',
    diskFormat: image.diskFormat ?? 'raw',
    containerFormat: image.containerFormat ?? 'bare',
    attributes: toAttributes(image, markers),
  };
}

export function toAttributes(image: Image, markers: Markers): Record<string, string> {
  const attributes: Record<string, string> = {
    ...markersToAttributes(markers),
    architecture: image.architecture,
    type: image.type,
  };
  if (image.minDisk !== undefined) attributes['min_disk'] = String(image.minDisk);
  if (image.minRam !== undefined) attributes['min_ram'] = String(image.minRam);
  if (image.os) attributes['os'] = JSON.stringify(image.os);
  if (image.tags.length > 0) attributes['tags'] = JSON.stringify(image.tags);
  for (const [key, value] of Object.entries(image.properties)) attributes[`property:${key}`] = value;
  return attributes;
}

/** The cloud's record -> what visor reads back: state, markers (when present) and generic metadata. */
export function toCloudImage(record: TinyRecord): CloudImage {
  const { attributes } = record;
  const markers = markersFromAttributes(attributes);
  const properties = Object.fromEntries(
    Object.entries(attributes)
      .filter(([key]) => key.startsWith('property:') && !isMarkerKey(key.slice('property:'.length)))
      .map(([key, value]) => [key.slice('property:'.length), value]),
  );
  const number = (key: string) =>
    attributes[key] === undefined ? {} : { [key === 'min_disk' ? 'minDisk' : 'minRam']: Number(attributes[key]) };
  return {
    nativeId: record.id,
    name: record.name,
    state: record.status === 'active' ? 'active' : record.status === 'disabled' ? 'disabled' : 'pending',
    hidden: record.hidden,
    inUse: false,
    access: record.visibility,
    diskFormat: record.diskFormat as CloudImage['diskFormat'] & string,
    containerFormat: record.containerFormat as CloudImage['containerFormat'] & string,
    ...(record.size !== undefined ? { size: record.size } : {}),
    checksums: record.sha256 !== undefined ? { sha256: record.sha256 } : {},
    ...(markers ? { markers } : {}),
    metadata: {
      name: record.name,
      ...(attributes['architecture'] ? { architecture: attributes['architecture'] as Image['architecture'] } : {}),
      ...(attributes['type'] ? { type: attributes['type'] as Image['type'] } : {}),
      ...number('min_disk'),
      ...number('min_ram'),
      ...(attributes['os'] ? { os: JSON.parse(attributes['os']) as Image['os'] & object } : {}),
      tags: attributes['tags'] ? (JSON.parse(attributes['tags']) as string[]) : [],
      properties,
    },
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}
