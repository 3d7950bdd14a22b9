import type { CloudImage, Markers } from '../../core/iaas/port.js';
import type { Access, DiskFormat, Image } from '../../core/image/model.js';
import { annotationKeys, imageAnnotations, metadataFromAnnotations } from '../../core/wire/oci/annotations.js';
import { emptyConfig, mediaTypes } from '../../core/wire/oci/media.js';
import type { TaggedArtifact } from './client.js';

/**
 * Pure translation between ORAS-style disk artifacts and visor's generic terms. A catalog image
 * is one tag of the target's repository; its metadata and markers are the manifest's annotations
 * (core/wire/oci/annotations.ts: Glance's names, as EGI's images carry them).
 */

/** The tag of a catalog image: its name made tag-safe, and the start of its id (unique, stable). */
export function tagFor(image: Pick<Image, 'id' | 'name'>): string {
  const slug = image.name
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .replace(/^[.-]+/, '')
    .slice(0, 100)
    .replace(/[.-]+$/, '');
  return `${slug || 'image'}-${image.id.slice(0, 8)}`;
}

/** The manifest of an image: empty config, one disk layer, the annotations. */
export function manifestFor(
  image: Image,
  markers: Markers | undefined,
  diskFormat: DiskFormat,
  layer: { digest: string; size: number },
  tag: string,
): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: mediaTypes.ociManifest,
    artifactType: mediaTypes.qemuDisk,
    config: { mediaType: mediaTypes.empty, digest: emptyConfig.digest, size: emptyConfig.size },
    layers: [
      {
        mediaType: mediaTypes.qemuDisk,
        digest: layer.digest,
        size: layer.size,
        annotations: { [annotationKeys.title]: `${tag}.${diskFormat === 'raw' ? 'img' : diskFormat}` },
      },
    ],
    annotations: { ...imageAnnotations(image, diskFormat, markers), [annotationKeys.tag]: tag },
  };
  return Buffer.from(JSON.stringify(manifest));
}

/**
 * A tag as visor sees it. Only a disk artifact (one layer) made for this very tag can carry
 * markers: a manifest copied under another tag is listed, but never claimed.
 */
export function toCloudImage(artifact: TaggedArtifact, access: Access): CloudImage {
  const { layer, annotations } = artifact.manifest;
  const meta = metadataFromAnnotations(annotations);
  const ownTag = annotations[annotationKeys.tag] === artifact.tag;
  const markers = layer && ownTag ? meta.markers : undefined;
  return {
    nativeId: artifact.tag,
    name: meta.name ?? artifact.tag,
    state: layer ? 'active' : 'error',
    hidden: false,
    inUse: false,
    access,
    ...(meta.diskFormat ? { diskFormat: meta.diskFormat } : {}),
    containerFormat: 'bare',
    ...(layer ? { size: layer.size, checksums: { sha256: layer.digest.slice('sha256:'.length) } } : { checksums: {} }),
    ...(markers ? { markers } : {}),
    metadata: {
      name: meta.name ?? artifact.tag,
      ...(meta.architecture ? { architecture: meta.architecture } : {}),
      ...(meta.type ? { type: meta.type } : {}),
      ...(meta.minDisk !== undefined ? { minDisk: meta.minDisk } : {}),
      ...(meta.minRam !== undefined ? { minRam: meta.minRam } : {}),
      os: meta.os,
      tags: meta.tags,
      properties: meta.properties,
    },
    ...(annotations[annotationKeys.created] ? { createdAt: annotations[annotationKeys.created] } : {}),
  };
}
