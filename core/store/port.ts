import type { Readable, Writable } from 'node:stream';
import type { ChecksumAlgorithm, Checksums } from '../image/model.js';

/** Inclusive byte range, as in HTTP: `end` defaults to the last byte. */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface PutOptions {
  /** Declared length, when known (lets S3 skip multipart, lets us fail early on short bodies). */
  size?: number;
  /** Checksums the caller expects; a mismatch fails the put and leaves nothing behind. */
  expected?: Checksums;
  signal?: AbortSignal;
  /**
   * The digests to compute in the same pass as the write (default: md5, sha256 and sha512).
   * Fewer cost less CPU per byte; a store may compute more (one whose protocol needs md5, say).
   * Those in `expected` are always computed.
   */
  digests?: readonly ChecksumAlgorithm[];
}

export interface PutResult {
  /** Store-specific URI that `get`, `head` and `delete` accept. */
  uri: string;
  size: number;
  /** At least the digests asked for (`PutOptions.digests`), computed in the same pass as the write. */
  checksums: Checksums;
}

export interface ObjectInfo {
  size: number;
  /** Whatever checksums the store can tell without reading the object. */
  checksums: Checksums;
  contentType?: string;
  lastModified?: string;
}

export interface GetResult {
  stream: Readable;
  /** Total size of the object. */
  size: number;
  /** The bytes actually returned, when a range was asked for. */
  range?: { start: number; end: number };
  /**
   * Where the store can: writes exactly the bytes of `stream` to `destination` (not ending it)
   * in large reused blocks, without stream machinery per chunk — the way to a socket. Use either
   * this or `stream`, never both. Rejects when the store fails or the destination goes away.
   * With `end`, the destination is ended right after the last byte, before the store lets go of
   * what it holds (a file's descriptor): the receiver does not wait for that.
   */
  send?(destination: Writable, options?: { end?: boolean }): Promise<void>;
  /**
   * Where the bytes are a range of an open local file (the file store): its descriptor, for a
   * reader on another thread that reads them itself, with nothing passing through this one. Valid
   * until `stream` is destroyed; use it instead of `stream` (then destroy `stream`, which closes it).
   */
  file?: { fd: number; start: number; length: number };
}

export interface StoreCapabilities {
  /** False for references-only stores such as `http`. */
  writable: boolean;
  ranges: boolean;
}

/**
 * The store port (DESIGN.md §4). Writes are atomic: no reader ever sees a partial object, and a
 * failed or aborted put leaves no bytes behind.
 */
export interface Store {
  readonly kind: string;
  readonly capabilities: StoreCapabilities;
  /** `key` is a hint for the object's name (usually the image id); the store decides the URI. */
  put(key: string, body: Readable, options?: PutOptions): Promise<PutResult>;
  get(uri: string, options?: { range?: ByteRange; signal?: AbortSignal }): Promise<GetResult>;
  head(uri: string): Promise<ObjectInfo>;
  /** Idempotent: deleting what is not there is not an error. */
  delete(uri: string): Promise<void>;
  /**
   * Removes leftovers of puts that a crash interrupted (temp files, pending multipart uploads)
   * older than `olderThanMs`; returns how many. Optional: stores without leftovers omit it.
   */
  sweep?(olderThanMs: number): Promise<number>;
  /**
   * A cheap check that the store answers (its folder is there, its bucket reachable with these
   * credentials), for readiness probes: no object is written. Optional.
   */
  ping?(signal?: AbortSignal): Promise<void>;
  /** Releases clients; safe to call twice. */
  close(): Promise<void>;
}
