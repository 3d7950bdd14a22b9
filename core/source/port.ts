import type { Readable } from 'node:stream';
import { VisorError, isVisorError, type ErrorKind } from '../errors.js';
import type { Architecture, Checksums, ContainerFormat, DiskFormat, OsInfo } from '../image/model.js';

/**
 * Where an entry's bytes are: an absolute http(s) URL (or a scheme the source itself reads, such
 * as `oci://`), plus request headers the source needs to fetch it. The source opens it; callers
 * treat it as opaque except for showing it.
 */
export interface SourceLocation {
  url: string;
  /** Headers the source sends with the download; never secrets (those stay inside the source). */
  headers?: Readonly<Record<string, string>>;
}

/**
 * One image a subscription offers: what the list says about it, mapped to visor's vocabulary.
 * `key` + `version` identify it: the same key with a new version is a new image that replaces
 * the old one; a key that leaves the list retires.
 */
export interface SourceEntry {
  /**
   * Stable identity of the entry inside its source, the natural key of idempotent imports:
   * HEPiX `dc:identifier`; simplestreams `content_id/product/version/item` without the version
   * (`content_id/product/item`); OCI `repository:tag`. Unique within one snapshot.
   */
  key: string;
  /**
   * The entry's version or revision; a different value means different bytes. HEPiX
   * `hv:version`, simplestreams `version_name`, OCI the manifest digest.
   */
  version: string;
  name: string;
  description?: string;
  location: SourceLocation;
  /** Exact size in bytes, when the list states it (checked while downloading). */
  size?: number;
  /** Digests the list states, lower-case hex; at least one. The download is checked against all. */
  checksums: Checksums;
  diskFormat?: DiskFormat;
  containerFormat?: ContainerFormat;
  architecture?: Architecture;
  os?: OsInfo;
  /** ISO 8601; after it the entry must not be imported and an imported copy retires. */
  expiresAt?: string;
  /** Who vouches for the entry (HEPiX endorser DN, OCI signer), as the source verified it. */
  endorser?: string;
  /**
   * Source-specific metadata, flattened to strings (Glance properties need strings), stored as
   * the image's custom properties: keys must match the catalog's property names
   * (`/^[A-Za-z][A-Za-z0-9_:-]{0,254}$/`: no dots), prefixed by the format and a colon, e.g.
   * `hepix:vo`, `simplestreams:content_id`, `oci:org_opencontainers_image_revision` (characters
   * outside the pattern replaced by `_`). The importer adds its own `source:*` keys.
   */
  properties: Readonly<Record<string, string>>;
}

/** What a verified list says as a whole. */
export interface SourceSnapshot {
  /**
   * The list's own revision (HEPiX `hv:version`, simplestreams `updated`, an OCI digest of the
   * tag set): used to notice change and, where the format orders them, to refuse rollbacks.
   */
  revision: string;
  /** Opaque token for `list({ previous })`: an ETag, a digest of the raw list. */
  cursor?: string;
  title?: string;
  /** ISO 8601 expiry of the whole list, when it has one (already checked: not yet past). */
  expiresAt?: string;
  /** The identity that signed the list, as verified (HEPiX signer DN, OpenPGP key id). */
  signer?: string;
  entries: SourceEntry[];
}

export interface SourceListOptions {
  signal?: AbortSignal;
  /**
   * The cursor of the last snapshot this subscription accepted. A source that can tell the
   * list has not changed (ETag, digest) answers `{ unchanged: true }`; others ignore it.
   */
  previous?: string;
}

export type SourceListing = SourceSnapshot | { unchanged: true; cursor: string };

export interface SourceOpenOptions {
  signal?: AbortSignal;
  /** Resume: the first byte wanted. A source that cannot resume starts again at 0 (see `offset`). */
  offset?: number;
}

export interface SourceDownload {
  stream: Readable;
  /** The byte the stream starts at: the offset asked for, or 0 when the source had to restart. */
  offset: number;
  /** Total size of the entry, when the server tells it. */
  size?: number;
}

export interface SourceCapabilities {
  /** `open` honours `offset` (HTTP ranges or the like). */
  resume: boolean;
  /** The list is cryptographically verified (signature), not only parsed. */
  signed: boolean;
}

/**
 * The source port: a published list of images a subscription follows (HEPiX image list,
 * simplestreams stream, OCI registry). A source fetches and verifies the list and opens the bytes
 * of an entry; deciding what to import, checking digests, limiting bandwidth and retiring is the
 * importer's job, so every source gets them alike.
 */
export interface Source {
  readonly kind: string;
  readonly capabilities: SourceCapabilities;
  /**
   * Fetches the list and verifies it (signature, signer, expiry, shape). Refusals are
   * `SourceError`s: the caller imports nothing from a refused list.
   */
  list(options?: SourceListOptions): Promise<SourceListing>;
  /** Opens the bytes of an entry of the last snapshot; an entry the source does not offer is `notFound`. */
  open(entry: SourceEntry, options?: SourceOpenOptions): Promise<SourceDownload>;
  /** Releases clients; safe to call twice. */
  close(): Promise<void>;
}

/**
 * Why a source refused a list or an entry, carried in `details.reason` of the VisorError, so
 * that history, logs and tests can tell the cases apart without reading messages.
 */
export const sourceRefusals = {
  unsigned: 'integrity', // a signature is required and there is none
  badSignature: 'integrity', // the signature does not verify: tampered content or a broken signature
  untrusted: 'integrity', // the signature verifies, but its signer does not chain to a trusted CA/key
  endorser: 'integrity', // the signer is not the endorser the list names or the subscription expects
  expired: 'integrity', // the list (or its signer's certificate) is past its expiry
  rollback: 'conflict', // the list's version is older than the one already accepted
  malformed: 'invalidResponse', // not a list of this format, or fields of the wrong type
  unsafePath: 'invalidResponse', // a path or URL escapes where the source allows (`..`, other hosts)
  digest: 'integrity', // downloaded bytes differ from the list's size or digests
  unreachable: 'unavailable', // the list or image could not be fetched; worth retrying
} as const satisfies Record<string, ErrorKind>;

export type SourceRefusal = keyof typeof sourceRefusals;

/** A VisorError whose kind follows from `reason` and whose details carry it. */
export function sourceError(
  reason: SourceRefusal,
  message: string,
  options: { cause?: unknown; details?: Record<string, unknown> } = {},
): VisorError {
  return new VisorError(sourceRefusals[reason], message, {
    ...(options.cause !== undefined ? { cause: options.cause } : {}),
    details: { ...options.details, reason },
  });
}

/** The refusal reason of an error a source threw, if it is one. */
export function refusalOf(error: unknown): SourceRefusal | undefined {
  if (!isVisorError(error)) return undefined;
  const reason = error.details?.['reason'];
  return typeof reason === 'string' && reason in sourceRefusals ? (reason as SourceRefusal) : undefined;
}

export function isUnchanged(listing: SourceListing): listing is { unchanged: true; cursor: string } {
  return 'unchanged' in listing && listing.unchanged === true;
}
