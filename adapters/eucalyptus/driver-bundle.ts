import { createCipheriv, createHash, type Hash } from 'node:crypto';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { isVisorError, VisorError } from '../../core/errors.js';
import type { Checksums } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import { DigestStream, verifyDigest } from '../../core/transfer/digest.js';
import type { StoredObject } from './client-walrus.js';

/**
 * The streaming bundler: image -> tar (one member) -> SHA1 -> gzip -> AES-128-CBC -> parts,
 * each part sent to Walrus as soon as it is full, in one pass over the image (euca2ools runs
 * the same stages as processes: the core pipes and fittings of its bundler). Memory is about
 * partSize × concurrency, whatever the image's size; nothing is written to disk.
 *
 * The same pass computes md5/sha256/sha512 of the image (checked against what the caller
 * declared: a lie is an `integrity` error before anything is registered), the SHA1 of the tar
 * stream (the manifest's image digest), and the SHA1 and MD5 of every part (the manifest's part
 * digests, and the Content-MD5 / ETag check of each upload).
 */

export interface BundlePart {
  index: number;
  /** `<name>.part.<NN>` as euca2ools names them. */
  filename: string;
  key: string;
  size: number;
  sha1: string;
  md5: string;
  /** True when an identical object was already in Walrus (a retried create) and was not sent. */
  reused: boolean;
}

export interface BundleResult {
  parts: BundlePart[];
  /** SHA1 of the tar stream (manifest image/digest). */
  tarSha1: string;
  /** Bytes of the image (manifest image/size). */
  size: number;
  checksums: Required<Checksums>;
  /** Bytes of all parts (manifest image/bundled_size). */
  bundledSize: number;
  /** Most part buffers alive at once (the memory bound, for tests and logs). */
  peakBuffers: number;
}

/** Where parts go: a sink the driver backs with Walrus. */
export interface PartSink {
  /** Sends one part; returns its ETag (checked to be the MD5). */
  put(key: string, body: Buffer, md5Hex: string, signal: AbortSignal): Promise<string>;
}

export interface BundleRequest {
  source: Readable;
  /** Declared image size and checksums: the bundle of anything else is refused. */
  size: number;
  expected: Checksums;
  /** The bundle's file name: tar member, manifest image/name, part-name prefix. */
  name: string;
  /** Object key prefix (folder) the part file names are appended to. */
  keyPrefix: string;
  /** Hex AES-128 key and IV (32 hex digits each). */
  key: string;
  iv: string;
  partSize: number;
  concurrency: number;
  gzipLevel: number;
  sink: PartSink;
  /** Objects already under the bundle's prefix: parts found there with the same size and MD5 are not sent again. */
  existing?: ReadonlyMap<string, StoredObject>;
  signal?: AbortSignal | undefined;
  onProgress?: ((imageBytes: number) => void) | undefined;
  logger?: Logger | undefined;
}

/** euca2ools: '{prefix}.part.{n:02}' (fittings.py) - two digits at least, more past 99. */
export const partFileName = (name: string, index: number) => `${name}.part.${String(index).padStart(2, '0')}`;

export async function bundleAndUpload(request: BundleRequest): Promise<BundleResult> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(request.signal?.reason);
  request.signal?.addEventListener('abort', onAbort, { once: true });
  const digest = new DigestStream();
  const sizeGuard = new SizeGuard(request.size);
  const tarSha1 = createHash('sha1');
  const writer = new PartWriter(request, controller.signal);
  const pack = tarPack();
  try {
    const entry = pack.entry({ name: request.name, size: request.size, mode: 0o644, mtime: new Date(0), type: 'file' });
    // tar-stream's streams (streamx) re-emit the error they are destroyed with after the
    // pipelines have settled and stopped listening; the pipelines already report the first one.
    pack.on('error', () => undefined);
    entry.on('error', () => undefined);
    let progressed = 0;
    const progress = new Transform({
      transform(chunk: Buffer, _e, callback) {
        progressed += chunk.length;
        request.onProgress?.(progressed);
        callback(null, chunk);
      },
    });
    const imageSide = pipeline(request.source, sizeGuard, digest, progress, entry, { signal: controller.signal }).then(
      () => {
        pack.finalize();
      },
    );
    const bundleSide = pipeline(
      pack,
      tap(tarSha1),
      createGzip({ level: request.gzipLevel }),
      createCipheriv('aes-128-cbc', Buffer.from(request.key, 'hex'), Buffer.from(request.iv, 'hex')),
      writer,
      {
        signal: controller.signal,
      },
    );
    // The first failure is the cause; what the abort then breaks elsewhere is only its echo.
    let first: { error: unknown } | undefined;
    const fail = (error: unknown) => {
      first ??= { error: writer.failure ?? sizeGuard.failure ?? error };
      controller.abort(first.error);
      throw error;
    };
    await Promise.allSettled([imageSide.catch(fail), bundleSide.catch(fail)]);
    if (first !== undefined) throw first.error;
    const result = digest.result();
    verifyDigest(result, { size: request.size, checksums: request.expected });
    const parts = writer.parts();
    return {
      parts,
      tarSha1: tarSha1.digest('hex'),
      size: result.size,
      checksums: result.checksums,
      bundledSize: parts.reduce((sum, p) => sum + p.size, 0),
      peakBuffers: writer.peakBuffers,
    };
  } catch (error) {
    if (isVisorError(error)) throw error;
    if (request.signal?.aborted) throw new VisorError('unavailable', 'eucalyptus: bundling aborted', { cause: error });
    throw new VisorError('unavailable', `eucalyptus: bundling failed: ${(error as Error).message}`, { cause: error });
  } finally {
    request.signal?.removeEventListener('abort', onAbort);
    if (!controller.signal.aborted) controller.abort();
  }
}

function tap(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, callback: TransformCallback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
}

/** Fails as soon as the source gives more bytes than declared, and at the end if it gave fewer. */
class SizeGuard extends Transform {
  #seen = 0;
  failure: VisorError | undefined;
  constructor(readonly declared: number) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.declared) {
      this.failure = new VisorError(
        'integrity',
        `content does not match: it is longer than the declared ${this.declared} bytes`,
        { details: { declared: this.declared } },
      );
      callback(this.failure);
      return;
    }
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    if (this.#seen !== this.declared) {
      this.failure = new VisorError(
        'integrity',
        `content does not match: size is ${this.#seen} bytes, expected ${this.declared}`,
        { details: { declared: this.declared, actual: this.#seen } },
      );
      callback(this.failure);
      return;
    }
    callback();
  }
}

interface Filling {
  buffer: Buffer;
  filled: number;
}

/**
 * Cuts the encrypted stream into parts and uploads each as soon as it is full. At most
 * `concurrency` part buffers exist (the one filling included); when all are in flight, writing
 * waits, which pushes back through the whole pipeline to the image source.
 */
class PartWriter extends Writable {
  readonly #r: BundleRequest;
  readonly #signal: AbortSignal;
  readonly #free: Buffer[] = [];
  readonly #waiters: Array<{ resolve: (buffer: Buffer) => void; reject: (error: unknown) => void }> = [];
  readonly #inflight = new Set<Promise<void>>();
  readonly #parts: BundlePart[] = [];
  #allocated = 0;
  #current: Filling | undefined;
  #next = 0;
  peakBuffers = 0;
  failure: VisorError | undefined;

  constructor(request: BundleRequest, signal: AbortSignal) {
    super({ highWaterMark: 1024 * 1024 });
    this.#r = request;
    this.#signal = signal;
  }

  parts(): BundlePart[] {
    return [...this.#parts].sort((a, b) => a.index - b.index);
  }

  override _write(chunk: Buffer, _e: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#consume(chunk).then(
      () => callback(),
      (error: unknown) => callback(error as Error),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    (async () => {
      if (this.#current && (this.#current.filled > 0 || this.#next === 0)) this.#dispatch(this.#current);
      this.#current = undefined;
      await this.#settle();
      if (this.failure) throw this.failure;
    })().then(
      () => callback(),
      (error: unknown) => callback(error as Error),
    );
  }

  async #consume(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.failure) throw this.failure;
      if (!this.#current) {
        const buffer = await this.#acquire();
        if (this.failure) throw this.failure;
        this.#current = { buffer, filled: 0 };
      }
      const part = this.#current;
      const n = Math.min(chunk.length - offset, part.buffer.length - part.filled);
      chunk.copy(part.buffer, part.filled, offset, offset + n);
      part.filled += n;
      offset += n;
      if (part.filled === part.buffer.length) {
        this.#dispatch(part);
        this.#current = undefined;
      }
    }
  }

  #acquire(): Promise<Buffer> {
    const free = this.#free.pop();
    if (free) return Promise.resolve(free);
    if (this.#allocated < this.#r.concurrency) {
      this.#allocated++;
      this.peakBuffers = Math.max(this.peakBuffers, this.#allocated);
      return Promise.resolve(Buffer.allocUnsafe(this.#r.partSize));
    }
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.#waiters.push({ resolve, reject });
    });
  }

  #release(buffer: Buffer): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(buffer);
    else this.#free.push(buffer);
  }

  #dispatch(part: Filling): void {
    const index = this.#next++;
    const body = part.buffer.subarray(0, part.filled);
    const filename = partFileName(this.#r.name, index);
    const key = this.#r.keyPrefix + filename;
    const sha1 = createHash('sha1').update(body).digest('hex');
    const md5 = createHash('md5').update(body).digest('hex');
    const existing = this.#r.existing?.get(key);
    const reused = existing !== undefined && existing.size === body.length && existing.etag === md5;
    const task = (async () => {
      try {
        if (!reused) await this.#r.sink.put(key, body, md5, this.#signal);
        this.#parts.push({ index, filename, key, size: body.length, sha1, md5, reused });
      } catch (error) {
        this.failure ??= isVisorError(error)
          ? error
          : new VisorError('unavailable', `eucalyptus: uploading ${filename} failed: ${(error as Error).message}`, {
              cause: error,
            });
        // Writers waiting for a buffer must see the failure, not hang.
        for (const waiter of this.#waiters.splice(0)) waiter.reject(this.failure);
      } finally {
        this.#release(part.buffer);
      }
    })();
    this.#inflight.add(task);
    void task.finally(() => this.#inflight.delete(task));
    if (reused) this.#r.logger?.debug('eucalyptus: part already in walrus, not sent again', { key });
  }

  async #settle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all([...this.#inflight]);
  }
}
