import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { isVisorError, VisorError } from '../../core/errors.js';
import { Deadline } from '../../core/iaas/kit/index.js';
import type { Checksums } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import type { ByteRange } from '../../core/store/port.js';
import { createS3Client, s3Error, type S3ConnectionOptions } from '../../core/wire/s3/client.js';
import { createMultipartUploadOutput, getObjectBody, parseOutput } from '../../core/wire/s3/schema.js';
import { maxParts, ObjectUpload } from '../../core/wire/s3/upload.js';
import type { StoredObject } from './mapper.js';
import {
  copyObjectOutput,
  headObjectOutput,
  listObjectsOutput,
  uploadPartCopyOutput,
  type ListedObject,
} from './schema.js';

/** S3's largest single PUT and CopyObject source; larger objects are copied part by part. */
export const maxSingleCopy = 5 * 1024 * 1024 * 1024;
const contentType = 'application/octet-stream';

/** Cumulus's `x-amz-acl` for the site-wide folder (CumulusTask uploads common images public-read). */
export type CannedAcl = 'public-read';

export interface CumulusClientOptions {
  connection: Omit<S3ConnectionOptions, 'forcePathStyle'>;
  bucket: string;
  /** Bytes per part of uploads and of copies of large objects. */
  partSize: number;
  /** Part buffers alive (uploads) and part copies in flight at once. */
  concurrency: number;
  /** Deadline of one metadata request (list, head, copy of a small object, delete). */
  requestTimeoutMs: number;
  /** Objects larger than this are copied with UploadPartCopy (S3's CopyObject stops at 5 GiB). */
  copyThreshold?: number;
  logger: Logger;
}

/** What an upload writes besides the bytes. */
export interface ObjectAttributes {
  metadata: Record<string, string>;
  acl?: CannedAcl;
}

/**
 * The Cumulus (S3) wire protocol for the adapter, on the s3 store's client layer: the same
 * client settings (`createS3Client`), error kinds (`s3Error`) and verified, atomic upload
 * (`ObjectUpload`). Cumulus is path-style only, so every request is.
 */
export class CumulusClient {
  readonly bucket: string;
  readonly #client: S3Client;
  readonly #options: CumulusClientOptions;
  /** Metadata of uploads in progress, by key: ObjectUpload builds its own commands (see #injectAttributes). */
  readonly #pending = new Map<string, ObjectAttributes>();

  constructor(options: CumulusClientOptions) {
    this.bucket = options.bucket;
    this.#options = options;
    this.#client = createS3Client({ ...options.connection, forcePathStyle: true });
    this.#injectAttributes();
  }

  /** One ListObjectsV2 page under `prefix`. */
  async listPage(
    prefix: string,
    maxKeys: number,
    token: string | undefined,
    signal?: AbortSignal,
  ): Promise<{ objects: ListedObject[]; next?: string }> {
    const context = `cumulus: ListObjectsV2 ${this.bucket}/${prefix}`;
    const output = await this.#send(
      new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: prefix,
        MaxKeys: maxKeys,
        ...(token !== undefined ? { ContinuationToken: token } : {}),
      }),
      context,
      signal,
    );
    const page = parseOutput(listObjectsOutput, output, context);
    const objects = (page.Contents ?? []).filter((o) => o.Key.startsWith(prefix));
    return { objects, ...(page.IsTruncated === true ? { next: page.NextContinuationToken! } : {}) };
  }

  /** Every object under `prefix`, following every page. */
  async listAll(prefix: string, pageSize: number, signal?: AbortSignal): Promise<ListedObject[]> {
    const all: ListedObject[] = [];
    const seen = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, pageSize, token, signal);
      all.push(...page.objects);
      token = page.next;
      if (token !== undefined) {
        // A server that hands back a token it gave before would have us list forever.
        if (seen.has(token))
          throw new VisorError(
            'invalidResponse',
            `cumulus: ListObjectsV2 ${this.bucket}/${prefix}: the server repeated a continuation token`,
          );
        seen.add(token);
      }
    } while (token !== undefined);
    return all;
  }

  /** HeadObject: size, ETag and user metadata. `notFound` when there is no such object. */
  async head(key: string, signal?: AbortSignal): Promise<StoredObject> {
    const context = `cumulus: HeadObject ${this.bucket}/${key}`;
    const output = await this.#send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), context, signal);
    const head = parseOutput(headObjectOutput, output, context);
    return {
      key,
      size: head.ContentLength,
      ...(head.ETag !== undefined &&
      head.SSECustomerAlgorithm === undefined &&
      !(head.ServerSideEncryption ?? '').startsWith('aws:kms')
        ? { etag: head.ETag }
        : {}),
      ...(head.LastModified ? { lastModified: head.LastModified } : {}),
      metadata: head.Metadata ?? {},
    };
  }

  /** Whether `key` exists (HeadObject). */
  async exists(key: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.head(key, signal);
      return true;
    } catch (error) {
      if (isVisorError(error, 'notFound')) return false;
      throw error;
    }
  }

  /**
   * Starts an upload to `key`: nothing is visible until `complete` (one PutObject, or a
   * CompleteMultipartUpload), and `abort` removes whatever was sent. The object gets
   * `attributes` (user metadata, ACL) with the request that creates it.
   */
  upload(
    key: string,
    attributes: ObjectAttributes,
    options: { sizeHint?: number; signal?: AbortSignal } = {},
  ): ObjectWrite {
    if (this.#pending.has(key))
      throw new VisorError('conflict', `cumulus: ${this.bucket}/${key} is already being uploaded`);
    this.#pending.set(key, attributes);
    const upload = new ObjectUpload({
      client: this.#client,
      bucket: this.bucket,
      key,
      partSize: this.#options.partSize,
      concurrency: this.#options.concurrency,
      ...(options.sizeHint !== undefined ? { sizeHint: options.sizeHint } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      logger: this.#options.logger,
    });
    return new ObjectWrite(upload, () => {
      if (this.#pending.get(key) === attributes) this.#pending.delete(key);
    });
  }

  /**
   * Server-side copy of `from` to `to` (the same key rewrites metadata in place) with new
   * metadata (MetadataDirective REPLACE); the bytes never pass through visor. Objects above
   * `copyThreshold` are copied part by part (UploadPartCopy).
   */
  async copy(
    from: string,
    to: string,
    size: number,
    attributes: ObjectAttributes,
    signal?: AbortSignal,
  ): Promise<void> {
    if (size > (this.#options.copyThreshold ?? maxSingleCopy))
      return this.#copyInParts(from, to, size, attributes, signal);
    const context = `cumulus: CopyObject ${this.bucket}/${from} to ${to}`;
    const output = await this.#send(
      new CopyObjectCommand({
        Bucket: this.bucket,
        Key: to,
        CopySource: copySource(this.bucket, from),
        MetadataDirective: 'REPLACE',
        Metadata: attributes.metadata,
        ContentType: contentType,
        ...(attributes.acl ? { ACL: attributes.acl } : {}),
      }),
      context,
      signal,
      // The server copies the bytes before it answers: give it the time a large object needs.
      Math.max(this.#options.requestTimeoutMs, copyTimeMs(size)),
    );
    parseOutput(copyObjectOutput, output, context);
  }

  /** DeleteObject (S3 deletes are idempotent: a missing key is no error). */
  async delete(key: string, signal?: AbortSignal): Promise<void> {
    await this.#send(
      new DeleteObjectCommand({ Bucket: this.bucket, Key: key }),
      `cumulus: DeleteObject ${this.bucket}/${key}`,
      signal,
    );
  }

  /** GetObject, optionally a byte range of the stored bytes. */
  async get(
    key: string,
    range: ByteRange | undefined,
    signal?: AbortSignal,
  ): Promise<{ stream: Readable; size: number; range?: { start: number; end: number } }> {
    const context = `cumulus: GetObject ${this.bucket}/${key}`;
    let output: unknown;
    try {
      // No deadline: the caller reads the body at its own pace; the socket timeout catches stalls.
      output = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
    } catch (error) {
      throw this.#error(error, context);
    }
    return getObjectBody(output, range, context);
  }

  destroy(): void {
    this.#client.destroy();
  }

  /**
   * ObjectUpload (the s3 store's verified upload) sends PutObject or CreateMultipartUpload
   * itself, without user metadata: this middleware adds the attributes registered for the
   * key before the request is serialised and signed.
   */
  #injectAttributes(): void {
    const pending = this.#pending;
    const bucket = this.bucket;
    this.#client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutObjectCommand' || context.commandName === 'CreateMultipartUploadCommand') {
          const input = args.input as {
            Bucket?: string;
            Key?: string;
            Metadata?: Record<string, string>;
            ACL?: string;
          };
          const attributes = input.Bucket === bucket && input.Key !== undefined ? pending.get(input.Key) : undefined;
          if (attributes && input.Metadata === undefined) {
            input.Metadata = { ...attributes.metadata };
            if (attributes.acl) input.ACL = attributes.acl;
          }
        }
        return next(args);
      },
      { step: 'initialize', name: 'visorNimbusObjectAttributes' },
    );
  }

  /** Copies in parts: CreateMultipartUpload with the new metadata, UploadPartCopy ranges, Complete. */
  async #copyInParts(
    from: string,
    to: string,
    size: number,
    attributes: ObjectAttributes,
    signal?: AbortSignal,
  ): Promise<void> {
    const partSize = Math.max(this.#options.partSize, Math.ceil(size / maxParts));
    const context = `cumulus: multipart copy ${this.bucket}/${from} to ${to}`;
    const created = await this.#send(
      new CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: to,
        Metadata: attributes.metadata,
        ContentType: contentType,
        ...(attributes.acl ? { ACL: attributes.acl } : {}),
      }),
      `${context}: CreateMultipartUpload`,
      signal,
    );
    const { UploadId } = parseOutput(createMultipartUploadOutput, created, `${context}: CreateMultipartUpload`);
    const ranges: Array<{ part: number; start: number; end: number }> = [];
    for (let start = 0, part = 1; start < size; start += partSize, part++)
      ranges.push({ part, start, end: Math.min(start + partSize, size) - 1 });
    const parts: CompletedPart[] = new Array(ranges.length);
    try {
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < ranges.length; i = next++) {
          const { part, start, end } = ranges[i]!;
          const output = await this.#send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: to,
              UploadId,
              PartNumber: part,
              CopySource: copySource(this.bucket, from),
              CopySourceRange: `bytes=${start}-${end}`,
            }),
            `${context}: UploadPartCopy ${part}`,
            signal,
            Math.max(this.#options.requestTimeoutMs, copyTimeMs(end - start + 1)),
          );
          parts[i] = {
            PartNumber: part,
            ETag: parseOutput(uploadPartCopyOutput, output, `${context}: UploadPartCopy ${part}`).CopyPartResult.ETag,
          };
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.#options.concurrency, ranges.length) }, worker));
      await this.#send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: to,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
        `${context}: CompleteMultipartUpload`,
        undefined,
        copyTimeMs(size),
      );
    } catch (error) {
      await this.#client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId }))
        .catch((e: unknown) => {
          this.#options.logger.warn(
            'nimbus: could not abort a multipart copy; its parts stay until the bucket lifecycle removes them',
            { key: to, error: s3Error(e, context).message },
          );
        });
      throw error;
    }
  }

  /** Sends a command under a deadline (the caller's signal and `timeoutMs`), with errors as VisorErrors. */
  async #send<T = unknown>(
    command: object,
    context: string,
    signal: AbortSignal | undefined,
    timeoutMs = this.#options.requestTimeoutMs,
  ): Promise<T> {
    const deadline = new Deadline(timeoutMs, signal);
    try {
      return (await this.#client.send(command as never, { abortSignal: deadline.signal })) as T;
    } catch (error) {
      throw deadline.failure(error, {
        timeout: () => `${context}: no answer within ${timeoutMs / 1000} s`,
        aborted: () => `${context}: aborted`,
        otherwise: (e) => this.#error(e, context),
      });
    } finally {
      deadline.dispose();
    }
  }

  /** s3Error, with a missing bucket as the configuration problem it is. */
  #error(error: unknown, context: string): VisorError {
    const e = s3Error(error, context);
    if (e.details?.['code'] === 'NoSuchBucket') {
      return new VisorError(
        'config',
        `nimbus: the repository bucket "${this.bucket}" does not exist (Nimbus's cumulus.repo.bucket, usually Repo)`,
        { cause: e, details: { ...e.details } },
      );
    }
    return e;
  }
}

/** An upload in progress; `complete` and `abort` also drop its registered attributes. */
export class ObjectWrite {
  readonly #upload: ObjectUpload;
  readonly #release: () => void;

  constructor(upload: ObjectUpload, release: () => void) {
    this.#upload = upload;
    this.#release = release;
  }

  get multipart(): boolean {
    return this.#upload.multipart;
  }

  write(chunk: Buffer): Promise<void> {
    return this.#upload.write(chunk);
  }

  /** Commits the object: call only once its size and checksums are verified. */
  async complete(stored: { size: number; checksums: Required<Checksums> }): Promise<void> {
    try {
      await this.#upload.complete(stored);
    } finally {
      this.#release();
    }
  }

  /** Removes whatever was sent (and the object, if a commit's outcome is unknown). Never throws. */
  async abort(reason?: unknown): Promise<void> {
    try {
      await this.#upload.abort(reason);
    } finally {
      this.#release();
    }
  }
}

/** `x-amz-copy-source`: bucket and key, each key segment URL-encoded. */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** Time a server-side copy may take: a minute plus 10 s per 100 MiB (at least ~10 MB/s). */
function copyTimeMs(bytes: number): number {
  return 60_000 + Math.ceil(bytes / (100 * 1024 * 1024)) * 10_000;
}
