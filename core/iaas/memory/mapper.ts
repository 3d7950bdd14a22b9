import { isMarkerKey, markersFromAttributes, markersToAttributes } from '../markers.js';
import type { CloudImage, CloudImageState, Markers } from '../port.js';
import {
  architectures,
  containerFormats,
  diskFormats,
  imageTypes,
  type Architecture,
  type ContainerFormat,
  type DiskFormat,
  type Image,
  type ImageType,
  type OsInfo,
} from '../../image/model.js';
import type { NativeFields, NativeImage, NativeStatus } from './client.js';

/**
 * Pure translation between the memory cloud's records and visor's generic terms, both ways. Every
 * adapter has one: it is where a cloud's vocabulary (statuses, field names, where the markers
 * live) meets visor's, and being pure (no calls, no clock) it is tested on recorded answers
 * alone. Markers go into the free-form properties under visor_* keys, as they do in Glance.
 */

const stateOf: Record<NativeStatus, CloudImageState> = {
  queued: 'pending',
  saving: 'pending',
  active: 'active',
  deactivated: 'disabled',
  killed: 'error',
};

const oneOf = <T extends string>(values: readonly T[], value: string | undefined): T | undefined =>
  value !== undefined && (values as readonly string[]).includes(value) ? (value as T) : undefined;

/** A native record as visor sees it; markers only when all of them are there and well-formed. */
export function toCloudImage(native: NativeImage): CloudImage {
  const markers = markersFromAttributes(native.properties);
  const properties = Object.fromEntries(Object.entries(native.properties).filter(([key]) => !isMarkerKey(key)));
  const os: OsInfo = {
    ...(native.os_type !== undefined ? { type: native.os_type } : {}),
    ...(native.os_distro !== undefined ? { distro: native.os_distro } : {}),
    ...(native.os_version !== undefined ? { version: native.os_version } : {}),
  };
  const architecture = oneOf<Architecture>(architectures, native.architecture);
  const type = oneOf<ImageType>(imageTypes, native.image_type);
  const diskFormat = oneOf<DiskFormat>(diskFormats, native.disk_format);
  const containerFormat = oneOf<ContainerFormat>(containerFormats, native.container_format);
  return {
    nativeId: native.id,
    name: native.name,
    state: stateOf[native.status],
    hidden: native.hidden,
    inUse: native.users > 0,
    access: native.visibility,
    ...(diskFormat ? { diskFormat } : {}),
    ...(containerFormat ? { containerFormat } : {}),
    ...(native.size !== undefined ? { size: native.size } : {}),
    checksums: { ...(native.md5 ? { md5: native.md5 } : {}), ...(native.sha256 ? { sha256: native.sha256 } : {}) },
    ...(markers ? { markers } : {}),
    metadata: {
      name: native.name,
      ...(architecture ? { architecture } : {}),
      ...(type ? { type } : {}),
      ...(native.min_disk !== undefined ? { minDisk: native.min_disk } : {}),
      ...(native.min_ram !== undefined ? { minRam: native.min_ram } : {}),
      ...(native.virtual_size !== undefined ? { virtualSize: native.virtual_size } : {}),
      ...(Object.keys(os).length > 0 ? { os } : {}),
      tags: [...native.tags],
      properties,
    },
    createdAt: native.created_at,
    updatedAt: native.updated_at,
  };
}

/**
 * The native fields for a generic image and its markers: what `create` registers and what
 * `updateMetadata` writes back. Shared access has no counterpart here (the capabilities say so),
 * so it never reaches this function; optional fields the image lacks are written as absent.
 */
export function toNativeFields(image: Image, markers: Markers): NativeFields & Pick<NativeImage, 'name'> {
  return {
    name: image.name,
    visibility: image.access === 'public' ? 'public' : 'private',
    architecture: image.architecture,
    image_type: image.type,
    ...(image.os?.type !== undefined ? { os_type: image.os.type } : {}),
    ...(image.os?.distro !== undefined ? { os_distro: image.os.distro } : {}),
    ...(image.os?.version !== undefined ? { os_version: image.os.version } : {}),
    ...(image.minDisk !== undefined ? { min_disk: image.minDisk } : {}),
    ...(image.minRam !== undefined ? { min_ram: image.minRam } : {}),
    ...(image.virtualSize !== undefined ? { virtual_size: image.virtualSize } : {}),
    tags: [...image.tags],
    // Free-form properties that look like marker keys are dropped: only the markers say whose it is.
    properties: {
      ...Object.fromEntries(Object.entries(image.properties).filter(([key]) => !isMarkerKey(key))),
      ...markersToAttributes(markers),
    },
  };
}
