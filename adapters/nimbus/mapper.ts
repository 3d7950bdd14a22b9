import { VisorError } from '../../core/errors.js';
import { markersFromAttributes, markersToAttributes, type MarkerKeys } from '../../core/iaas/markers.js';
import type { CloudImage, Markers } from '../../core/iaas/port.js';
import {
  architectures,
  containerFormats,
  diskFormats,
  imageTypes,
  type Access,
  type Checksums,
  type ContainerFormat,
  type DiskFormat,
  type Image,
  type OsInfo,
} from '../../core/image/model.js';
import { propertiesValue, tagsValue } from './schema.js';

/**
 * Pure translation between Cumulus repository objects and visor's generic terms.
 *
 * Nimbus keeps an image as one object: `<prefix><canonical-id>/<name>` for the owner's images,
 * `<prefix>common/<name>` for the site's shared ones (CumulusRepository.listFiles,
 * CumulusImageLocator). Everything else visor knows about the image — markers, generic fields,
 * what the bytes are — travels as S3 user metadata (`x-amz-meta-visor-*`), which is the only
 * place an object can carry it. That metadata is small (2 KiB in all on S3 and Cumulus, 256
 * characters per value on a default Swift) and ASCII, so this module also encodes, measures and
 * refuses.
 */

export interface RepoLayout {
  /** Key prefix of the repository, with its trailing slash (`VMS/`). */
  prefix: string;
  /** The user's folder: `VMS/<canonical-id>/`. */
  canonicalId: string;
  /** The site-wide folder: `VMS/common/`. */
  commonFolder: string;
}

export type Folder = 'own' | 'common';

export interface ObjectLocation {
  key: string;
  folder: Folder;
  /** The Nimbus image name: what users launch (`cloud-client --run --name <name>`). */
  name: string;
}

/** Common images are readable by every user of the cloud; the user's own folder by them alone. */
export const folderOf = (access: Access): Folder => (access === 'public' ? 'common' : 'own');
export const accessOf = (folder: Folder): Access => (folder === 'common' ? 'public' : 'private');

export function folderPrefix(layout: RepoLayout, folder: Folder): string {
  return `${layout.prefix}${folder === 'common' ? layout.commonFolder : layout.canonicalId}/`;
}

export function objectKey(layout: RepoLayout, folder: Folder, name: string): string {
  return `${folderPrefix(layout, folder)}${name}`;
}

/**
 * Where a key sits in the layout, or undefined when it is not an image of this user: another
 * user's folder, the prefix itself, or a key nested deeper than `<folder>/<name>` (Nimbus splits
 * keys into exactly three parts; visor never writes deeper ones and leaves them alone).
 */
export function locate(layout: RepoLayout, key: string): ObjectLocation | undefined {
  for (const folder of ['own', 'common'] as const) {
    const head = folderPrefix(layout, folder);
    if (!key.startsWith(head)) continue;
    const name = key.slice(head.length);
    if (name === '' || name.includes('/')) return undefined;
    return { key, folder, name };
  }
  return undefined;
}

/**
 * Names visor gives objects: letters, digits, `.`, `_`, `-`; starting with a letter or digit; no
 * `..`; at most 255 characters (the name becomes a file name on the VMMs). No encoding: an
 * encoded name would not be the name users type to launch the image.
 */
export const objectNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

export function objectNameProblem(name: string): string | undefined {
  if (!objectNamePattern.test(name)) {
    return (
      'Cumulus image names may only use letters, digits, ".", "_" and "-", ' +
      'must start with a letter or digit and have at most 255 characters'
    );
  }
  if (name.includes('..')) return 'Cumulus image names must not contain ".."';
  return undefined;
}

/** Throws `invalidInput` for a name that cannot be an object name (set a naming template for this cloud). */
export function checkImageName(name: string): void {
  const problem = objectNameProblem(name);
  // JSON.stringify: control characters in a hostile name are shown escaped, never written raw.
  if (problem)
    throw new VisorError(
      'invalidInput',
      `nimbus: image name ${JSON.stringify(name)} cannot be ` +
        `used: ${problem} (translate names with this cloud's naming template)`,
      { details: { name } },
    );
}

// ---------------------------------------------------------------------------------------------
// Object metadata

/** The four marker keys, as S3 user metadata names (lower case: S3 and Swift lower-case them). */
export const markerKeys: MarkerKeys = {
  agent: 'visor-agent',
  target: 'visor-target',
  imageId: 'visor-image-id',
  sha256: 'visor-sha256',
  revision: 'visor-revision',
};

export const metaKeys = {
  name: 'visor-name',
  architecture: 'visor-architecture',
  type: 'visor-type',
  diskFormat: 'visor-disk-format',
  containerFormat: 'visor-container-format',
  minDisk: 'visor-min-disk',
  minRam: 'visor-min-ram',
  osType: 'visor-os-type',
  osDistro: 'visor-os-distro',
  osVersion: 'visor-os-version',
  virtualSize: 'visor-virtual-size',
  /** JSON, split over `visor-tags-1`, `visor-tags-2`, ... */
  tags: 'visor-tags',
  /** JSON, split over `visor-properties-1`, ... (keeps property names' case, which header names lose). */
  properties: 'visor-properties',
  /** What the object's bytes are: `gzip` when compressed (absent: the image itself). */
  compression: 'visor-compression',
  /** Size, md5 and sha256 of the image (before compression), verified while uploading. */
  contentSize: 'visor-content-size',
  contentMd5: 'visor-content-md5',
  contentSha256: 'visor-content-sha256',
} as const;

/** S3 and Cumulus: 2 KiB of user metadata in all (names after `x-amz-meta-` plus values). */
export const maxMetadataBytes = 2048;
/** Swift's default max_meta_value_length: the smallest per-value limit among the S3 look-alikes. */
export const maxValueLength = 256;

export type Compression = 'none' | 'gzip';

/** What the object's bytes are, recorded at upload (the ETag says nothing once they are gzip). */
export interface ContentInfo {
  compression: Compression;
  /** The image's size, before compression. */
  size: number;
  md5: string;
  sha256: string;
}

// Printable ASCII without leading or trailing spaces (HTTP trims those), and not an encoded word.
const plainText = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
const encodedWord = /^=\?UTF-8\?B\?([A-Za-z0-9+/]*={0,2})\?=$/i;

/** A string as a header value: as it is when it can be, else an RFC 2047 encoded word (what S3 itself uses). */
export function encodeText(value: string): string {
  if (plainText.test(value) && !value.startsWith('=?')) return value;
  return `=?UTF-8?B?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** The inverse of `encodeText`; undefined for a malformed encoded word or invalid UTF-8. */
export function decodeText(value: string): string | undefined {
  const word = encodedWord.exec(value);
  if (!word) return value;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(word[1]!, 'base64'));
  } catch {
    return undefined;
  }
}

/**
 * JSON that is pure printable ASCII without spaces: non-ASCII and spaces as `\uXXXX`, so that
 * it survives being cut into header values of which HTTP trims the ends.
 */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u0020\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function chunked(base: string, text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0, n = 1; i < text.length; i += maxValueLength, n++)
    out[`${base}-${n}`] = text.slice(i, i + maxValueLength);
  return out;
}

/** Reassembles `base-1`, `base-2`, ...; undefined when absent, an error string when the run has gaps. */
function unchunked(meta: Readonly<Record<string, string>>, base: string): string | { error: string } | undefined {
  const pattern = new RegExp(`^${base}-(\\d{1,3})$`);
  const parts = new Map<number, string>();
  for (const [key, value] of Object.entries(meta)) {
    const m = pattern.exec(key);
    if (m) parts.set(Number(m[1]), value);
  }
  if (parts.size === 0) return undefined;
  const text: string[] = [];
  for (let n = 1; n <= parts.size; n++) {
    const part = parts.get(n);
    if (part === undefined) return { error: `${base}: part ${n} of ${parts.size} is missing` };
    text.push(part);
  }
  return text.join('');
}

const isOneOf = <T extends string>(list: readonly T[], value: unknown): value is T =>
  typeof value === 'string' && (list as readonly string[]).includes(value);

/**
 * The object metadata of an image: markers, generic fields and what the bytes are (when known:
 * an object visor did not upload has no recorded sha256). Throws
 * `invalidInput` for an image that cannot be written (its name, a value longer than a header
 * value may be, or more than 2 KiB in all), before anything is sent.
 */
export function toObjectMetadata(
  image: Image,
  markers: Markers,
  content: ContentInfo | undefined,
): Record<string, string> {
  checkImageName(image.name);
  const meta: Record<string, string> = { ...markersToAttributes(markers, markerKeys) };
  // The agent id comes from the config and may be any text; the other markers are hex and digits.
  meta[markerKeys.agent] = encodeText(markers.agent);
  const text = (key: string, value: string | undefined) => {
    if (value !== undefined) meta[key] = encodeText(value);
  };
  text(metaKeys.name, image.name);
  text(metaKeys.architecture, image.architecture);
  text(metaKeys.type, image.type);
  text(metaKeys.diskFormat, image.diskFormat);
  text(metaKeys.containerFormat, image.containerFormat);
  if (image.minDisk !== undefined) meta[metaKeys.minDisk] = String(image.minDisk);
  if (image.minRam !== undefined) meta[metaKeys.minRam] = String(image.minRam);
  text(metaKeys.osType, image.os?.type);
  text(metaKeys.osDistro, image.os?.distro);
  text(metaKeys.osVersion, image.os?.version);
  if (image.virtualSize !== undefined) meta[metaKeys.virtualSize] = String(image.virtualSize);
  if (image.tags.length > 0) Object.assign(meta, chunked(metaKeys.tags, asciiJson(image.tags)));
  if (Object.keys(image.properties).length > 0)
    Object.assign(meta, chunked(metaKeys.properties, asciiJson(image.properties)));
  if (content) {
    if (content.compression !== 'none') meta[metaKeys.compression] = content.compression;
    meta[metaKeys.contentSize] = String(content.size);
    meta[metaKeys.contentMd5] = content.md5;
    meta[metaKeys.contentSha256] = content.sha256;
  }

  const tooLong = Object.entries(meta).filter(([, v]) => v.length > maxValueLength);
  if (tooLong.length > 0) {
    throw new VisorError(
      'invalidInput',
      `nimbus: image ${JSON.stringify(image.name)}: ` +
        `${tooLong.map(([k, v]) => `${k} would be ${v.length} characters`).join(', ')}; ` +
        `object metadata values may have at most ${maxValueLength}`,
      {
        details: { fields: Object.fromEntries(tooLong.map(([k, v]) => [k, v.length])), limit: maxValueLength },
      },
    );
  }
  const bytes = metadataBytes(meta);
  if (bytes > maxMetadataBytes) {
    const byField = new Map<string, number>();
    for (const [key, value] of Object.entries(meta)) {
      const field = key.replace(/-\d+$/, '');
      byField.set(field, (byField.get(field) ?? 0) + key.length + value.length);
    }
    const largest = [...byField].sort((a, b) => b[1] - a[1]).slice(0, 4);
    throw new VisorError(
      'invalidInput',
      `nimbus: image ${JSON.stringify(image.name)}: its metadata needs ${bytes} bytes of object metadata, ` +
        `more than the ${maxMetadataBytes} that Cumulus and S3 allow ` +
        `(largest: ${largest.map(([f, n]) => `${f} ${n}`).join(', ')}); ` +
        `drop or shorten properties or tags for this cloud`,
      { details: { bytes, limit: maxMetadataBytes, fields: Object.fromEntries(byField) } },
    );
  }
  return meta;
}

/** Bytes of user metadata as S3 counts them: every name (after `x-amz-meta-`) and value. */
export function metadataBytes(meta: Readonly<Record<string, string>>): number {
  let total = 0;
  for (const [key, value] of Object.entries(meta)) total += Buffer.byteLength(key) + Buffer.byteLength(value);
  return total;
}

export interface DecodedMetadata {
  /** Present when the markers are complete and every other visor-* value decoded cleanly. */
  markers?: Markers;
  metadata: CloudImage['metadata'];
  diskFormat?: DiskFormat;
  containerFormat?: ContainerFormat;
  content?: ContentInfo;
  /** What did not decode (hand-edited or foreign metadata); the image is then not claimed. */
  problems: string[];
}

/** Reads visor's object metadata back. Never throws: what does not decode is listed in `problems`. */
export function fromObjectMetadata(meta: Readonly<Record<string, string>>): DecodedMetadata {
  const problems: string[] = [];
  const text = (key: string): string | undefined => {
    const raw = meta[key];
    if (raw === undefined) return undefined;
    const value = decodeText(raw);
    if (value === undefined) problems.push(`${key}: not a valid encoded word`);
    return value;
  };
  const integer = (key: string): number | undefined => {
    const raw = meta[key];
    if (raw === undefined) return undefined;
    if (!/^\d{1,15}$/.test(raw)) {
      problems.push(`${key}: ${JSON.stringify(raw.slice(0, 40))} is not a whole number`);
      return undefined;
    }
    return Number(raw);
  };
  const json = <T>(
    base: string,
    parse: (value: unknown) => { success: true; data: T } | { success: false },
  ): T | undefined => {
    const joined = unchunked(meta, base);
    if (joined === undefined) return undefined;
    if (typeof joined !== 'string') {
      problems.push(joined.error);
      return undefined;
    }
    let value: unknown;
    try {
      value = JSON.parse(joined);
    } catch {
      problems.push(`${base}: not JSON`);
      return undefined;
    }
    const parsed = parse(value);
    if (!parsed.success) problems.push(`${base}: not the expected shape`);
    return parsed.success ? parsed.data : undefined;
  };
  const oneOf = <T extends string>(key: string, list: readonly T[]): T | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    if (!isOneOf(list, value)) {
      problems.push(`${key}: ${JSON.stringify(value.slice(0, 40))} is not one of ${list.join(', ')}`);
      return undefined;
    }
    return value;
  };

  const name = text(metaKeys.name);
  const architecture = oneOf(metaKeys.architecture, architectures);
  const type = oneOf(metaKeys.type, imageTypes);
  const diskFormat = oneOf(metaKeys.diskFormat, diskFormats);
  const containerFormat = oneOf(metaKeys.containerFormat, containerFormats);
  const minDisk = integer(metaKeys.minDisk);
  const minRam = integer(metaKeys.minRam);
  const virtualSize = integer(metaKeys.virtualSize);
  const os: OsInfo = {};
  const osType = text(metaKeys.osType);
  const osDistro = text(metaKeys.osDistro);
  const osVersion = text(metaKeys.osVersion);
  if (osType !== undefined) os.type = osType;
  if (osDistro !== undefined) os.distro = osDistro;
  if (osVersion !== undefined) os.version = osVersion;
  const tags = json(metaKeys.tags, (v) => tagsValue.safeParse(v));
  const properties = json(metaKeys.properties, (v) => propertiesValue.safeParse(v));
  const content = contentInfoOf(meta, problems);

  const agent = text(markerKeys.agent);
  const markers = markersFromAttributes({ ...meta, [markerKeys.agent]: agent }, markerKeys);
  const anyMarker = Object.values(markerKeys).some((k) => meta[k] !== undefined);
  if (anyMarker && !markers)
    problems.push('visor-agent, visor-image-id, visor-sha256, visor-revision: incomplete or malformed markers');

  return {
    ...(markers && problems.length === 0 ? { markers } : {}),
    metadata: {
      ...(name !== undefined ? { name } : {}),
      ...(architecture ? { architecture } : {}),
      ...(type ? { type } : {}),
      ...(minDisk !== undefined ? { minDisk } : {}),
      ...(minRam !== undefined ? { minRam } : {}),
      ...(Object.keys(os).length > 0 ? { os } : {}),
      tags: tags ?? [],
      properties: properties ?? {},
      ...(virtualSize !== undefined ? { virtualSize } : {}),
    },
    ...(diskFormat ? { diskFormat } : {}),
    ...(containerFormat ? { containerFormat } : {}),
    ...(content ? { content } : {}),
    problems,
  };
}

function contentInfoOf(meta: Readonly<Record<string, string>>, problems: string[]): ContentInfo | undefined {
  const size = meta[metaKeys.contentSize];
  const md5 = meta[metaKeys.contentMd5];
  const sha256 = meta[metaKeys.contentSha256];
  const compression = meta[metaKeys.compression] ?? 'none';
  if (size === undefined && md5 === undefined && sha256 === undefined && meta[metaKeys.compression] === undefined)
    return undefined;
  const bad: string[] = [];
  if (size === undefined || !/^\d{1,15}$/.test(size)) bad.push(metaKeys.contentSize);
  if (md5 === undefined || !/^[0-9a-f]{32}$/.test(md5)) bad.push(metaKeys.contentMd5);
  if (sha256 === undefined || !/^[0-9a-f]{64}$/.test(sha256)) bad.push(metaKeys.contentSha256);
  if (compression !== 'none' && compression !== 'gzip') bad.push(metaKeys.compression);
  if (bad.length > 0) {
    problems.push(`${bad.join(', ')}: missing or malformed`);
    return undefined;
  }
  return { compression: compression as Compression, size: Number(size), md5: md5!, sha256: sha256! };
}

/** An object as HEAD describes it. */
export interface StoredObject {
  key: string;
  /** Bytes stored (compressed ones, for gzip). */
  size: number;
  etag?: string;
  lastModified?: Date;
  metadata: Readonly<Record<string, string>>;
}

/** The ETag as an MD5 of the bytes when it is one: 32 hex digits (multipart ETags end in `-N`). */
export function plainMd5(etag: string | undefined): string | undefined {
  if (etag === undefined) return undefined;
  const value = etag.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
  return /^[0-9a-f]{32}$/.test(value) ? value : undefined;
}

/** A repository image, what its bytes are, and what of its metadata did not decode. */
export interface MappedObject {
  image: CloudImage;
  /** What the object's bytes are, when visor recorded it. */
  content?: ContentInfo;
  /** Metadata that did not decode (logged by the driver); the image is then not claimed. */
  problems: string[];
}

/**
 * A repository object -> CloudImage. A repository image is usable as soon as it exists (an S3
 * PUT is atomic) and Nimbus has no per-image flags, so the state is always `active`, never
 * hidden, never known to be in use (VMMs get a copy at launch).
 */
export function toCloudImage(layout: RepoLayout, object: StoredObject): MappedObject {
  const location = locate(layout, object.key);
  if (!location) throw new VisorError('internal', `nimbus: ${object.key} is not an image key of this repository`);
  const decoded = fromObjectMetadata(object.metadata);
  const problems = [...decoded.problems];
  const content = decoded.content;
  const etagMd5 = plainMd5(object.etag);
  const checksums: Checksums = {};
  let size = object.size;
  if (content?.compression === 'gzip') {
    size = content.size;
    checksums.md5 = content.md5;
    checksums.sha256 = content.sha256;
  } else if (content) {
    if (content.size !== object.size)
      problems.push(`${metaKeys.contentSize}: records ${content.size} bytes but the object has ${object.size}`);
    else if (etagMd5 !== undefined && etagMd5 !== content.md5)
      problems.push(`${metaKeys.contentMd5}: records ${content.md5} but the object's ETag is ${etagMd5}`);
    else {
      checksums.md5 = content.md5;
      checksums.sha256 = content.sha256;
    }
  }
  // The cloud's own MD5 of uncompressed bytes wins over what visor recorded.
  if (content?.compression !== 'gzip' && etagMd5 !== undefined) checksums.md5 = etagMd5;
  const markers = problems.length === 0 ? decoded.markers : undefined;
  const name = decoded.metadata.name ?? location.name;
  const image: CloudImage = {
    nativeId: object.key,
    name,
    state: 'active',
    hidden: false,
    inUse: false,
    access: accessOf(location.folder),
    ...(decoded.diskFormat ? { diskFormat: decoded.diskFormat } : {}),
    ...(decoded.containerFormat ? { containerFormat: decoded.containerFormat } : {}),
    size,
    checksums,
    ...(markers ? { markers } : {}),
    metadata: { ...decoded.metadata, name },
    // LastModified moves with every metadata update (a copy): it is no creation time.
    ...(object.lastModified ? { updatedAt: object.lastModified.toISOString() } : {}),
  };
  return { image, ...(content ? { content } : {}), problems };
}
