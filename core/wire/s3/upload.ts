import { createHash, type Hash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Checksums } from '../../image/model.js';
import { isVisorError, VisorError } from '../../errors.js';
import type { Logger } from '../../logging/logger.js';
import { s3Error } from './client.js';
import {
  completeMultipartUploadOutput,
  createMultipartUploadOutput,
  etagIsMd5,
  normalizeEtag,
  parseOutput,
  putObjectOutput,
  uploadPartOutput,
} from './schema.js';

/** S3's limit on the parts of one multipart upload. */
export const maxParts = 10_000;
const contentType = 'application/octet-stream';

export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
  partSize: number;
  /** Part buffers alive at once, the one being filled included: memory is partSize × this. */
  concurrency: number;
  /** Declared size, if any: sizes the first buffer of small objects. */
  sizeHint?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

interface Part {
  buffer: Buffer;
  filled: number;
  /**
   * MD5 of the part so far, for its Content-MD5. None for the first part: if the object fits in
   * it, the whole-object MD5 serves, and if not, it is hashed once when it is sent.
   */
  md5: Hash | undefined;
}

/**
 * One object being written. Bytes are gathered into part-sized buffers; the upload commits
 * (PutObject, or CompleteMultipartUpload) only in `complete`, which the caller calls after it
 * has verified size and checksums. Until then nothing is visible under the key, and `abort`
 * removes whatever was sent.
 *
 * An object that fits in one part is a single PutObject; as soon as a second part starts it
 * becomes a multipart upload whose parts go up while the next ones fill, each with Content-MD5
 * and its ETag checked. Buffers are recycled: at most `concurrency` exist, so memory is bounded
 * by partSize × concurrency whatever the object's size.
 */
export class ObjectUpload {
  readonly #t: UploadTarget;
  readonly #controller = new AbortController();
  readonly #free: Buffer[] = [];
  readonly #waiters: Array<{ resolve: (buffer: Buffer) => void; reject: (error: unknown) => void }> = [];
  readonly #inflight = new Set<Promise<void>>();
  readonly #parts: CompletedPart[] = [];
  readonly #partMd5s: Buffer[] = [];
  readonly #onExternalAbort = () =>
    this.#fail(new VisorError('unavailable', 'upload aborted', { cause: this.#t.signal?.reason }));
  #allocated = 0;
  #current: Part | undefined;
  #partCount = 0;
  #uploadId: Promise<string> | undefined;
  #failure: VisorError | undefined;
  /** A PutObject or CompleteMultipartUpload was sent: the object may exist if it failed. */
  #committing = false;
  #done = false;
  /** False under SSE-KMS / SSE-C, where ETags are not MD5s and cannot be checked. */
  #etagsAreMd5 = true;

  constructor(target: UploadTarget) {
    this.#t = target;
    target.signal?.addEventListener('abort', this.#onExternalAbort, { once: true });
  }

  /** True once the object went up as a multipart upload. */
  get multipart(): boolean {
    return this.#partCount > 0;
  }

  /** Buffers `chunk`, sending parts as they fill; waits while all buffers are in flight. */
  async write(chunk: Buffer): Promise<void> {
    const { partSize } = this.#t;
    let offset = 0;
    while (offset < chunk.length) {
      this.#throwIfFailed();
      let part = this.#current;
      if (part && part.filled === part.buffer.length && part.filled < partSize) {
        part = this.#current = this.#grow(part);
      }
      if (part && part.filled === partSize) {
        // A full part and more bytes follow: this object is a multipart upload.
        this.#dispatch(part);
        part = this.#current = undefined;
      }
      if (!part) {
        const first = this.#allocated === 0;
        const buffer = first ? this.#firstBuffer() : await this.#acquire();
        part = this.#current = { buffer, filled: 0, md5: first ? undefined : createHash('md5') };
      }
      const n = Math.min(chunk.length - offset, part.buffer.length - part.filled);
      const piece = chunk.subarray(offset, offset + n);
      piece.copy(part.buffer, part.filled);
      part.md5?.update(piece);
      part.filled += n;
      offset += n;
    }
  }

  /**
   * Commits the object. Call only after verifying `digest`: this is the point where the object
   * becomes visible. For multipart, the server's ETag is checked against the parts' MD5s.
   */
  async complete(digest: { size: number; checksums: Required<Checksums> }): Promise<void> {
    this.#throwIfFailed();
    if (!this.multipart) {
      await this.#putObject(digest);
    } else {
      if (this.#current && this.#current.filled > 0) this.#dispatch(this.#current);
      this.#current = undefined;
      await this.#settle();
      this.#throwIfFailed();
      await this.#completeMultipart();
    }
    this.#done = true;
    this.#detach();
  }

  /** Cancels what is in flight and removes everything sent so far. Never throws. */
  async abort(reason?: unknown): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#fail(isVisorError(reason) ? reason : new VisorError('unavailable', 'upload abandoned', { cause: reason }));
    this.#detach();
    await this.#settle();
    const { client, bucket, key, logger } = this.#t;
    if (this.#uploadId) {
      const uploadId = await this.#uploadId.catch(() => undefined);
      if (uploadId !== undefined) {
        try {
          await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
          logger?.debug('s3 store: multipart upload aborted', { bucket, key, parts: this.#partCount });
        } catch (error) {
          const e = s3Error(error, `s3: AbortMultipartUpload ${bucket}/${key}`);
          // Parts left behind cost storage until a lifecycle rule removes them: say so.
          if (e.kind !== 'notFound')
            logger?.warn(
              's3 store: could not abort a multipart upload; its parts stay until the bucket lifecycle removes them',
              { bucket, key, uploadId, error: e.message },
            );
        }
      }
    }
    if (this.#committing) {
      // The commit's outcome is unknown (network failure, ETag mismatch): remove the object.
      // The key is fresh, so this can only ever delete what this upload wrote.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch((error: unknown) => {
        logger?.warn('s3 store: could not delete a failed upload', {
          bucket,
          key,
          error: s3Error(error, 's3: DeleteObject').message,
        });
      });
    }
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure;
  }

  #fail(error: VisorError): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#controller.abort(error);
    for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
  }

  #detach(): void {
    this.#t.signal?.removeEventListener('abort', this.#onExternalAbort);
  }

  async #settle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  /** Small objects should not cost a whole part: start from the declared size, or 1 MiB. */
  #firstBuffer(): Buffer {
    this.#allocated = 1;
    const hint = this.#t.sizeHint;
    const size =
      hint !== undefined && hint > 0 ? Math.min(hint, this.#t.partSize) : Math.min(1024 * 1024, this.#t.partSize);
    return Buffer.allocUnsafe(size);
  }

  /** The first buffer doubles (up to partSize) while the first part fills. */
  #grow(part: Part): Part {
    const buffer = Buffer.allocUnsafe(Math.min(part.buffer.length * 2, this.#t.partSize));
    part.buffer.copy(buffer, 0, 0, part.filled);
    return { buffer, filled: part.filled, md5: part.md5 };
  }

  #acquire(): Promise<Buffer> {
    const free = this.#free.pop();
    if (free) return Promise.resolve(free);
    if (this.#allocated < this.#t.concurrency) {
      this.#allocated += 1;
      return Promise.resolve(Buffer.allocUnsafe(this.#t.partSize));
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #release(buffer: Buffer): void {
    if (buffer.length !== this.#t.partSize || this.#failure) return;
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(buffer);
    else this.#free.push(buffer);
  }

  #dispatch(part: Part): void {
    const partNumber = ++this.#partCount;
    if (partNumber > maxParts) {
      this.#fail(
        new VisorError(
          'invalidInput',
          `object is larger than ${maxParts} parts of ${this.#t.partSize} bytes; raise the store's partSize`,
        ),
      );
      this.#throwIfFailed();
    }
    const body = part.buffer.subarray(0, part.filled);
    const md5 = (part.md5 ?? createHash('md5').update(body)).digest();
    this.#partMd5s[partNumber - 1] = md5;
    const task = this.#uploadPart(partNumber, body, md5)
      .catch((error: unknown) =>
        this.#fail(s3Error(error, `s3: UploadPart ${partNumber} of ${this.#t.bucket}/${this.#t.key}`)),
      )
      .finally(() => {
        this.#inflight.delete(task);
        this.#release(part.buffer);
      });
    this.#inflight.add(task);
  }

  #startMultipart(): Promise<string> {
    const { client, bucket, key, logger } = this.#t;
    // No abort signal: a CreateMultipartUpload cut short could leave an upload we never learn
    // the id of, and so could never abort.
    this.#uploadId ??= client
      .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: contentType }))
      .then(
        (output) => {
          const { UploadId } = parseOutput(
            createMultipartUploadOutput,
            output,
            `s3: CreateMultipartUpload ${bucket}/${key}`,
          );
          logger?.debug('s3 store: multipart upload started', { bucket, key });
          return UploadId;
        },
        (error: unknown) => {
          throw s3Error(error, `s3: CreateMultipartUpload ${bucket}/${key}`);
        },
      );
    return this.#uploadId;
  }

  async #uploadPart(partNumber: number, body: Buffer, md5: Buffer): Promise<void> {
    const { client, bucket, key } = this.#t;
    const uploadId = await this.#startMultipart();
    this.#throwIfFailed();
    const command = new UploadPartCommand({
      Bucket: bucket,
      Key: key,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: body,
      ContentLength: body.length,
      ContentMD5: md5.toString('base64'),
    });
    // Content-MD5 is signed and checked by the server; hashing the payload again for SigV4
    // would be one more SHA-256 pass over every byte for no extra safety.
    command.middlewareStack.add(payloadHash('UNSIGNED-PAYLOAD'), { step: 'build', name: 'visorPayloadHash' });
    const output = await client.send(command, { abortSignal: this.#controller.signal });
    const parsed = parseOutput(uploadPartOutput, output, `s3: UploadPart ${partNumber} of ${bucket}/${key}`);
    const { ETag } = parsed;
    if (!etagIsMd5(parsed)) this.#etagsAreMd5 = false;
    else if (normalizeEtag(ETag) !== md5.toString('hex')) {
      throw new VisorError(
        'integrity',
        `s3: part ${partNumber} of ${bucket}/${key} was stored with ETag ${ETag}, expected MD5 ${md5.toString('hex')}`,
      );
    }
    this.#parts[partNumber - 1] = { PartNumber: partNumber, ETag };
  }

  async #completeMultipart(): Promise<void> {
    const { client, bucket, key, signal, logger } = this.#t;
    const uploadId = await this.#startMultipart();
    const parts = this.#parts.slice(0, this.#partCount);
    if (parts.length !== this.#partCount || parts.some((p) => p === undefined)) {
      throw new VisorError(
        'internal',
        `s3: ${bucket}/${key}: ${this.#partCount} parts sent but only ${parts.filter(Boolean).length} acknowledged`,
      );
    }
    if (signal?.aborted) throw new VisorError('unavailable', 'upload aborted', { cause: signal.reason });
    this.#committing = true;
    const context = `s3: CompleteMultipartUpload ${bucket}/${key}`;
    // No abort signal from here on: a commit cut short would leave its outcome unknown.
    const output = await client
      .send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      )
      .catch((error: unknown) => {
        throw s3Error(error, context);
      });
    const parsed = parseOutput(completeMultipartUploadOutput, output, context);
    const { ETag } = parsed;
    // Every S3 we know computes md5(concat(part MD5s))-N; check it where the server uses that form.
    const expected = `${createHash('md5').update(Buffer.concat(this.#partMd5s)).digest('hex')}-${parts.length}`;
    if (
      this.#etagsAreMd5 &&
      etagIsMd5(parsed) &&
      ETag !== undefined &&
      /^[0-9a-f]{32}-\d+$/.test(normalizeEtag(ETag)) &&
      normalizeEtag(ETag) !== expected
    ) {
      throw new VisorError('integrity', `s3: ${bucket}/${key} was assembled with ETag ${ETag}, expected ${expected}`);
    }
    logger?.debug('s3 store: multipart upload completed', { bucket, key, parts: parts.length });
  }

  async #putObject(digest: { size: number; checksums: Required<Checksums> }): Promise<void> {
    const { client, bucket, key } = this.#t;
    const body = this.#current ? this.#current.buffer.subarray(0, this.#current.filled) : Buffer.alloc(0);
    if (body.length !== digest.size)
      throw new VisorError('internal', `s3: ${bucket}/${key}: buffered ${body.length} bytes of ${digest.size}`);
    const md5 = Buffer.from(digest.checksums.md5, 'hex');
    const command = new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ContentMD5: md5.toString('base64'),
      ContentType: contentType,
    });
    // The SHA-256 is already known: the server can check it too, at no cost to us.
    command.middlewareStack.add(payloadHash(digest.checksums.sha256), { step: 'build', name: 'visorPayloadHash' });
    const context = `s3: PutObject ${bucket}/${key}`;
    this.#committing = true;
    const output = await client.send(command, { abortSignal: this.#controller.signal }).catch((error: unknown) => {
      throw s3Error(error, context);
    });
    const parsed = parseOutput(putObjectOutput, output, context);
    const { ETag } = parsed;
    if (
      ETag !== undefined &&
      etagIsMd5(parsed) &&
      /^[0-9a-f]{32}$/.test(normalizeEtag(ETag)) &&
      normalizeEtag(ETag) !== digest.checksums.md5
    ) {
      throw new VisorError(
        'integrity',
        `s3: ${bucket}/${key} was stored with ETag ${ETag}, expected MD5 ${digest.checksums.md5}`,
      );
    }
  }
}

/**
 * A build-step middleware that sets x-amz-content-sha256, which SigV4 then signs instead of
 * hashing the body itself.
 */
function payloadHash(value: string) {
  return <A extends { request: unknown }, R>(next: (args: A) => Promise<R>) =>
    async (args: A): Promise<R> => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = value;
      return next(args);
    };
}
