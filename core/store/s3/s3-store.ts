import { pipeline } from 'node:stream/promises';
import { Writable, type Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { isVisorError, VisorError } from '../../errors.js';
import type { Logger } from '../../logging/logger.js';
import { verifyDigest } from '../../transfer/digest.js';
import { ParallelDigestStream } from '../../transfer/parallel-digest.js';
import { checkRange, objectKeyPattern } from '../keys.js';
import type { ByteRange, GetResult, ObjectInfo, PutOptions, PutResult, Store } from '../port.js';
import { createS3Client, s3Error, type S3ConnectionOptions } from '../../wire/s3/client.js';
import { etagIsMd5, getObjectBody, headObjectOutput, normalizeEtag, parseOutput } from '../../wire/s3/schema.js';
import { maxParts, ObjectUpload } from '../../wire/s3/upload.js';
import { bucketPattern, prefixProblem } from '../../wire/s3/names.js';
import { newObjectName, objectKeyOf, objectUri } from './uri.js';
import { presignedUrl } from './presign.js';

export const mebibyte = 1024 * 1024;
/** S3's smallest part (all but the last) and largest single PUT / part. */
export const minPartSize = 5 * mebibyte;
export const maxPartSize = 5 * 1024 * mebibyte;

export interface S3StoreOptions extends S3ConnectionOptions {
  bucket: string;
  /** Prepended to every object key (`images/`); URIs outside it are refused. */
  prefix?: string;
  /** Create the bucket on first put when it does not exist (default false). */
  createBucket?: boolean;
  /** Bytes per part (default 16 MiB, at least 5 MiB); objects up to this size are one PutObject. */
  partSize?: number;
  /** Part buffers at once, the one being filled included (default 4): memory ≈ partSize × this. */
  concurrency?: number;
  logger?: Logger;
}

/** How long a presigned URL may live at most: a week, as SigV4 allows. */
export const maxPresignSeconds = 7 * 24 * 3600;

/**
 * Images as objects in one S3-family bucket (AWS, Walrus, Cumulus, Ceph RGW, Swift s3api).
 *
 * Atomic by construction: an object becomes visible only through PutObject or
 * CompleteMultipartUpload, and both are sent only after the size and checksums computed while
 * streaming matched what the caller declared. Anything else (a failing source, an abort, a
 * mismatch, a server error) aborts the multipart upload, so no reader ever sees a partial or
 * unverified object and nothing is left behind. Keys get a fresh suffix on every put, so a
 * re-upload never replaces the object the catalog points at.
 */
export class S3Store implements Store {
  readonly kind = 's3';
  readonly capabilities = { writable: true, ranges: true };
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #createBucket: boolean;
  readonly #partSize: number;
  readonly #concurrency: number;
  readonly #region: string;
  readonly #logger: Logger | undefined;
  readonly #connection: S3ConnectionOptions;
  #bucketReady: Promise<void> | undefined;
  #closed = false;

  constructor(options: S3StoreOptions) {
    const prefix = options.prefix ?? '';
    const partSize = options.partSize ?? 16 * mebibyte;
    const concurrency = options.concurrency ?? 4;
    const problems = [
      bucketPattern.test(options.bucket) ? undefined : `bucket "${options.bucket}" is not a valid bucket name`,
      prefixProblem(prefix) === undefined ? undefined : `prefix "${prefix}" ${prefixProblem(prefix)}`,
      Number.isSafeInteger(partSize) && partSize >= minPartSize && partSize <= maxPartSize
        ? undefined
        : `partSize must be an integer from ${minPartSize} (5 MiB) to ${maxPartSize} (5 GiB)`,
      Number.isSafeInteger(concurrency) && concurrency >= 1 && concurrency <= 64
        ? undefined
        : 'concurrency must be an integer from 1 to 64',
    ].filter((p) => p !== undefined);
    if (problems.length > 0) throw new VisorError('config', `s3 store: ${problems.join('; ')}`);
    this.#bucket = options.bucket;
    this.#prefix = prefix;
    this.#createBucket = options.createBucket ?? false;
    this.#partSize = partSize;
    this.#concurrency = concurrency;
    this.#region = options.region;
    this.#logger = options.logger;
    this.#connection = options;
    this.#client = createS3Client(options);
  }

  /**
   * A URL anyone can GET the object at, without credentials, until it expires (default one hour,
   * at most a week): SigV4 query signing, or V2's AWSAccessKeyId/Expires/Signature with
   * `signatureVersion: 2`. The URI must be one of this store's, as for `get`.
   */
  async presignedUrl(uri: string, options: { expiresInSeconds?: number } = {}): Promise<string> {
    this.#open();
    const key = objectKeyOf(uri, this.#bucket, this.#prefix);
    const seconds = options.expiresInSeconds ?? 3600;
    if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > maxPresignSeconds)
      throw new VisorError('invalidInput', `s3 store: a presigned URL lives 1 to ${maxPresignSeconds} seconds`);
    return presignedUrl(this.#client, this.#connection, this.#bucket, key, seconds);
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    this.#open();
    if (!objectKeyPattern.test(key)) throw new VisorError('invalidInput', `invalid object key "${key}"`);
    if (options.size !== undefined && options.size > this.#partSize * maxParts) {
      throw new VisorError(
        'invalidInput',
        `s3 store: ${options.size} bytes need more than ${maxParts} parts of ${this.#partSize}; raise partSize`,
      );
    }
    if (this.#createBucket) await this.#ensureBucket();
    const objectKey = `${this.#prefix}${newObjectName(key)}`;
    const upload = new ObjectUpload({
      client: this.#client,
      bucket: this.#bucket,
      key: objectKey,
      partSize: this.#partSize,
      concurrency: this.#concurrency,
      ...(options.size !== undefined ? { sizeHint: options.size } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(this.#logger ? { logger: this.#logger } : {}),
    });
    // Hashed on worker threads, side by side: one core cannot do md5 + sha256 + sha512 at upload speed.
    const digest = new ParallelDigestStream();
    try {
      // A Writable sink (not an async function): its error is the one pipeline reports.
      const sink = new Writable({
        write: (chunk: Buffer, _encoding, callback) => {
          // A body longer than declared fails now, not after uploading the surplus.
          if (options.size !== undefined && digest.bytes > options.size) {
            callback(
              new VisorError(
                'integrity',
                `content does not match: size is more than ${options.size} bytes, expected ${options.size}`,
              ),
            );
            return;
          }
          upload.write(chunk).then(() => callback(), callback);
        },
      });
      await pipeline(body, digest, sink, ...(options.signal ? [{ signal: options.signal }] : []));
      const result = digest.result();
      verifyDigest(result, { size: options.size, checksums: options.expected });
      await upload.complete(result);
      return { uri: objectUri(this.#bucket, objectKey), ...result };
    } catch (error) {
      await upload.abort(error);
      throw this.#putError(error, objectKey, options.signal);
    }
  }

  async get(uri: string, options: { range?: ByteRange; signal?: AbortSignal } = {}): Promise<GetResult> {
    this.#open();
    const key = objectKeyOf(uri, this.#bucket, this.#prefix);
    const { range, signal } = options;
    if (range && !plausible(range)) return this.#unsatisfiable(uri, range);
    const context = `s3: GetObject ${this.#bucket}/${key}`;
    let output: unknown;
    try {
      output = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      );
    } catch (error) {
      const e = this.#error(error, context, uri);
      if (range && (e.kind === 'invalidInput' || (e.details?.['status'] as number | undefined) === 416))
        return this.#unsatisfiable(uri, range);
      throw e;
    }
    return getObjectBody(output, range, context);
  }

  async head(uri: string): Promise<ObjectInfo> {
    this.#open();
    const key = objectKeyOf(uri, this.#bucket, this.#prefix);
    const context = `s3: HeadObject ${this.#bucket}/${key}`;
    const output = await this.#client
      .send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key }))
      .catch((error: unknown) => {
        throw this.#error(error, context, uri);
      });
    const info = parseOutput(headObjectOutput, output, context);
    // A plain 32-hex ETag is the MD5 of a single-part object; multipart ETags end in "-N".
    const etag = info.ETag !== undefined ? normalizeEtag(info.ETag) : undefined;
    const md5 = etag !== undefined && /^[0-9a-f]{32}$/.test(etag) && etagIsMd5(info) ? etag : undefined;
    return {
      size: info.ContentLength,
      checksums: md5 !== undefined ? { md5 } : {},
      ...(info.ContentType !== undefined ? { contentType: info.ContentType } : {}),
      ...(info.LastModified !== undefined ? { lastModified: info.LastModified.toISOString() } : {}),
    };
  }

  async delete(uri: string): Promise<void> {
    this.#open();
    const key = objectKeyOf(uri, this.#bucket, this.#prefix);
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
    } catch (error) {
      const e = this.#error(error, `s3: DeleteObject ${this.#bucket}/${key}`, uri);
      if (e.kind !== 'notFound') throw e;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
  }

  #open(): void {
    if (this.#closed) throw new VisorError('internal', `s3 store for bucket ${this.#bucket} is closed`);
  }

  /** Creates the bucket when missing (createBucket: true); once per store, retried after a failure. */
  #ensureBucket(): Promise<void> {
    this.#bucketReady ??= this.#createIfMissing().catch((error: unknown) => {
      this.#bucketReady = undefined;
      throw error;
    });
    return this.#bucketReady;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    this.#open();
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.#bucket }), signal ? { abortSignal: signal } : {});
    } catch (error) {
      // A bucket created on first put is not there yet: the store still works.
      const e = s3Error(error, `s3: HeadBucket ${this.#bucket}`);
      if (!(this.#createBucket && e.kind === 'notFound')) throw e;
    }
  }

  async #createIfMissing(): Promise<void> {
    const bucket = this.#bucket;
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: bucket }));
      return;
    } catch (error) {
      const e = s3Error(error, `s3: HeadBucket ${bucket}`);
      if (e.kind !== 'notFound') throw e;
    }
    try {
      await this.#client.send(
        new CreateBucketCommand({
          Bucket: bucket,
          // us-east-1 is the one region that refuses an explicit location constraint.
          ...(this.#region !== 'us-east-1'
            ? { CreateBucketConfiguration: { LocationConstraint: this.#region as never } }
            : {}),
        }),
      );
      this.#logger?.info('s3 store: bucket created', { bucket });
    } catch (error) {
      const e = s3Error(error, `s3: CreateBucket ${bucket}`);
      // Someone (another agent) created it between our HEAD and CREATE: that is what we wanted.
      if (e.details?.['code'] === 'BucketAlreadyOwnedByYou') return;
      if (e.details?.['code'] === 'BucketAlreadyExists')
        throw new VisorError('config', `s3 store: bucket name "${bucket}" is taken by another account`, { cause: e });
      throw e;
    }
  }

  /** s3Error, with a missing object named by its URI and a missing bucket as what it is here. */
  #error(error: unknown, context: string, uri: string): VisorError {
    const e = s3Error(error, context);
    const missingBucket = this.#missingBucket(e);
    if (missingBucket) return missingBucket;
    if (e.kind === 'notFound')
      return new VisorError('notFound', `no object at ${uri}`, { cause: e, details: { ...e.details } });
    return e;
  }

  /** A missing bucket is a configuration problem, not a missing image. */
  #missingBucket(e: VisorError): VisorError | undefined {
    if (e.details?.['code'] !== 'NoSuchBucket') return undefined;
    return new VisorError(
      'config',
      `s3 store: bucket "${this.#bucket}" does not exist (create it, or set createBucket: true)`,
      { cause: e, details: { ...e.details } },
    );
  }

  #putError(error: unknown, objectKey: string, signal: AbortSignal | undefined): VisorError {
    if (signal?.aborted)
      return new VisorError('unavailable', `s3 store: upload of ${objectKey} aborted`, { cause: error });
    if (isVisorError(error)) return this.#missingBucket(error) ?? error;
    // The source failed (a client that went away, a broken pipe): nothing was committed.
    return new VisorError('unavailable', `s3 store: writing ${objectKey} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }

  /** The standard unsatisfiable-range error, which needs the object's size (one HEAD). */
  async #unsatisfiable(uri: string, range: ByteRange): Promise<never> {
    if (range.end !== undefined && !Number.isSafeInteger(range.end))
      throw new VisorError('invalidInput', `range end ${range.end} is not a byte offset`);
    const { size } = await this.head(uri);
    checkRange(range, size);
    throw new VisorError(
      'invalidResponse',
      `s3: ${uri}: the server refused range ${range.start}-${range.end ?? ''} of a ${size}-byte object`,
    );
  }
}

/** Ranges worth asking the server for; the rest get the standard error without a GET. */
function plausible(range: ByteRange): boolean {
  return (
    Number.isSafeInteger(range.start) &&
    range.start >= 0 &&
    (range.end === undefined || (Number.isSafeInteger(range.end) && range.end >= range.start))
  );
}
