/**
 * The generic image (DESIGN.md §3): VISOR's schema brought up to date with Glance's. Every
 * catalog, API and adapter speaks this shape; adapters translate it to and from their cloud's.
 */
export const architectures = ['i386', 'x86_64', 'aarch64', 'armv7l', 'ppc64', 'ppc64le', 's390x', 'riscv64'] as const;
export const diskFormats = ['raw', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'iso', 'ami', 'aki', 'ari', 'ploop'] as const;
export const containerFormats = ['bare', 'ovf', 'ova', 'ami', 'aki', 'ari'] as const;
export const imageTypes = ['machine', 'kernel', 'ramdisk'] as const;
export const accessLevels = ['public', 'private', 'shared'] as const;
export const imageStatuses = ['locked', 'uploading', 'available', 'error', 'deleted'] as const;
export const checksumAlgorithms = ['md5', 'sha256', 'sha512'] as const;
/** Where an image is in its life (core/image/deprecation.ts): `active` is the absence of a `deprecation`. */
export const deprecationStates = ['deprecated', 'obsolete'] as const;
/**
 * Digests that may be computed after an upload, off its request path (sha256 never is: it is
 * the content's identity, checked against the client's signed digest before the image is
 * available).
 */
export const deferredChecksums = ['md5', 'sha512'] as const;

export type Architecture = (typeof architectures)[number];
export type DiskFormat = (typeof diskFormats)[number];
export type ContainerFormat = (typeof containerFormats)[number];
export type ImageType = (typeof imageTypes)[number];
export type Access = (typeof accessLevels)[number];
export type ImageStatus = (typeof imageStatuses)[number];
export type ChecksumAlgorithm = (typeof checksumAlgorithms)[number];
export type DeprecationState = (typeof deprecationStates)[number];

/**
 * An image on its way out, as GCE's `deprecate` has it: `deprecated` (usable, flagged, pointing
 * at its replacement), then `obsolete` (hidden or disabled for new launches), then deleted. The
 * dates schedule the next steps; they take effect when they pass, in the catalog and in every cloud.
 */
export interface Deprecation {
  state: DeprecationState;
  /** The catalog image to use instead. */
  replacement?: string;
  /** When it was deprecated (ISO time). */
  since: string;
  /** When it becomes obsolete, if still deprecated then. */
  obsoleteOn?: string;
  /** When it is deleted (softly, see `deletedAt`). */
  deleteOn?: string;
}
export type DeferredChecksum = (typeof deferredChecksums)[number];

export type Checksums = Partial<Record<ChecksumAlgorithm, string>>;

export interface OsInfo {
  type?: string; // linux, windows, bsd, ...
  distro?: string; // ubuntu, debian, centos, ...
  version?: string;
}

/** Where the image's bits live: the configured store's name and a store-specific URI. */
export interface ImageLocation {
  store: string;
  uri: string;
}

export interface Image {
  id: string;
  name: string;
  architecture: Architecture;
  diskFormat?: DiskFormat;
  containerFormat?: ContainerFormat;
  type: ImageType;
  kernelId?: string;
  ramdiskId?: string;
  access: Access;
  /** Projects/users an image with access `shared` is shared with. */
  members: string[];
  owner?: string;
  status: ImageStatus;
  size?: number;
  virtualSize?: number;
  checksums: Checksums;
  /**
   * Digests of the stored bytes still being computed (after the upload, from the stored bytes);
   * absent once `checksums` has them all.
   */
  checksumsPending?: DeferredChecksum[];
  minDisk?: number; // GiB
  minRam?: number; // MiB
  os?: OsInfo;
  tags: string[];
  /** Free-form custom properties (VISOR kept any unknown key; Glance needs string values). */
  properties: Record<string, string>;
  location?: ImageLocation;
  createdAt: string;
  updatedAt: string;
  uploadedAt?: string;
  /** Versions of one OS line share a family; a cloud may keep the newest N and name the latest. */
  family?: string;
  /** Never the family's `latest` (a version held back, as Azure's excludeFromLatest). */
  excludeFromLatest?: boolean;
  /** Never deleted, hidden or disabled by visor, in the catalog or in any cloud, until unprotected. */
  protected?: boolean;
  /** Present while the image is deprecated or obsolete. */
  deprecation?: Deprecation;
  /** When it was deleted (status `deleted`): it can be restored, bits included, until `purgeAfter`. */
  deletedAt?: string;
  /** When a deleted image's record and bits are removed for good. */
  purgeAfter?: string;
  /** Incremented on every write; an update names the revision it read (optimistic concurrency). */
  revision: number;
}

/** Fields that only the service sets; never taken from a client as-is. */
export const systemFields = [
  'id',
  'status',
  'size',
  'checksums',
  'checksumsPending',
  'location',
  'createdAt',
  'updatedAt',
  'uploadedAt',
  'revision',
  'deprecation',
  'deletedAt',
  'purgeAfter',
] as const;

/** Everything a caller may give when registering an image; the rest is filled in by `newImage`. */
export type ImageDraft = Omit<Partial<Image>, 'revision' | 'createdAt' | 'updatedAt'> &
  Pick<Image, 'name' | 'architecture'>;

/**
 * A change to an image. `null` clears an optional field; `properties` are merged key by key
 * (a `null` value removes the key); arrays are replaced whole.
 */
export type ImageChanges = {
  [K in Exclude<keyof Image, 'id' | 'createdAt' | 'updatedAt' | 'revision' | 'properties'>]?:
    | Image[K]
    | (undefined extends Image[K] ? null : never);
} & { properties?: Record<string, string | null> };
