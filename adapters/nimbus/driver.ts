import { pipeline as pipelineCallback, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { isVisorError, VisorError } from '../../core/errors.js';
import { checkFormats, checkRetireMode, cleanUpAfter, Deadline } from '../../core/iaas/kit/index.js';
import { checkClaim } from '../../core/iaas/markers.js';
import type {
  ClaimedCallOptions,
  CloudImage,
  CreateRequest,
  DriverCallOptions,
  DriverCapabilities,
  IaasDriver,
  Markers,
  RetireMode,
} from '../../core/iaas/port.js';
import type { Access, Image } from '../../core/image/model.js';
import { silentLogger, type Logger } from '../../core/logging/logger.js';
import { checkRange } from '../../core/store/keys.js';
import type { ByteRange } from '../../core/store/port.js';
import { DigestStream, verifyDigest } from '../../core/transfer/digest.js';
import { CumulusClient, type ObjectAttributes } from './client.js';
import {
  folderOf,
  folderPrefix,
  locate,
  objectKey,
  plainMd5,
  toCloudImage,
  toObjectMetadata,
  type Compression,
  type ContentInfo,
  type Folder,
  type MappedObject,
  type ObjectLocation,
  type RepoLayout,
  type StoredObject,
} from './mapper.js';
import { NimbusFrontend, offeredImage, reconcile, type FrontendOptions } from './client-frontend.js';
import { ByteSlice, DownloadTail, VerifyingStream } from './driver-streams.js';

export interface NimbusDriverOptions {
  /** Cumulus URL (http://host:8888). */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The user's canonical id: their folder `<prefix><canonicalId>/`. */
  canonicalId: string;
  bucket: string;
  /** With its trailing slash (`VMS/`). */
  prefix: string;
  commonFolder: string;
  compress: Compression;
  partSize: number;
  concurrency: number;
  /** Keys per ListObjectsV2 page. */
  pageSize: number;
  requestTimeoutMs: number;
  /** HeadObject calls in flight while listing (default 8). */
  headConcurrency?: number;
  /** Objects above this size are copied part by part (default 5 GiB, S3's CopyObject limit). */
  copyThreshold?: number;
  /** Nimbus's EC2 Query frontend: list and get also ask it which images Nimbus offers. */
  frontend?: FrontendOptions;
  logger?: Logger;
}

/**
 * The IaasDriver for Nimbus: images are objects in the Cumulus repository. See README.md for
 * the native calls, the layout, the field mapping and why the capabilities are what they are.
 */
export class NimbusDriver implements IaasDriver {
  readonly adapter = 'nimbus';
  readonly capabilities: DriverCapabilities = Object.freeze({
    diskFormats: ['raw'],
    containerFormats: ['bare'],
    retireModes: ['delete'],
    access: ['public', 'private'],
    reportsChecksums: ['md5', 'sha256'],
    reportsSize: true,
    importFromUrl: false,
    requiresUrl: false,
    properties: true,
    tags: true,
    download: true,
    detectsInUse: false,
  } satisfies DriverCapabilities);
  readonly #options: NimbusDriverOptions;
  readonly #layout: RepoLayout;
  readonly #client: CumulusClient;
  readonly #frontend: NimbusFrontend | undefined;
  readonly #logger: Logger;
  #closed = false;

  constructor(options: NimbusDriverOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#layout = { prefix: options.prefix, canonicalId: options.canonicalId, commonFolder: options.commonFolder };
    this.#client = new CumulusClient({
      connection: {
        endpoint: options.endpoint,
        region: options.region,
        accessKeyId: options.accessKeyId,
        secretAccessKey: options.secretAccessKey,
      },
      bucket: options.bucket,
      partSize: options.partSize,
      concurrency: options.concurrency,
      requestTimeoutMs: options.requestTimeoutMs,
      ...(options.copyThreshold !== undefined ? { copyThreshold: options.copyThreshold } : {}),
      logger: this.#logger,
    });
    this.#frontend = options.frontend ? new NimbusFrontend(options.frontend) : undefined;
  }

  /** The user's images (`<prefix><canonicalId>/`) and the site's (`<prefix>common/`): what Nimbus lists. */
  async list(options: DriverCallOptions = {}): Promise<CloudImage[]> {
    this.#open();
    const keys: string[] = [];
    for (const folder of ['own', 'common'] as const) {
      for (const object of await this.#client.listAll(
        folderPrefix(this.#layout, folder),
        this.#options.pageSize,
        options.signal,
      )) {
        if (locate(this.#layout, object.Key)) keys.push(object.Key);
      }
    }
    // A listing carries no user metadata: one HEAD per image reads markers and fields.
    const mapped = await mapLimit(keys, this.#options.headConcurrency ?? 8, async (key) => {
      try {
        return this.#map(await this.#client.head(key, options.signal));
      } catch (error) {
        if (isVisorError(error, 'notFound')) return undefined; // deleted since the listing
        throw error;
      }
    });
    const images = mapped.filter((m): m is MappedObject => m !== undefined).map((m) => m.image);
    return this.#offered(images, options);
  }

  async get(nativeId: string, options: DriverCallOptions = {}): Promise<CloudImage> {
    this.#open();
    const image = (await this.#head(this.#locate(nativeId), options.signal)).image;
    return (await this.#offered([image], options, false))[0]!;
  }

  /**
   * The repository and the user's folder. The common folder is shared by every user of the
   * repository: there only the markers (agent and target) tell copies apart (README.md).
   */
  async scope(): Promise<string> {
    const { endpoint, prefix, canonicalId } = this.#options;
    return `nimbus ${endpoint} ${this.#client.bucket}/${prefix}${canonicalId}`;
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    this.#open();
    const { image, markers, content } = request;
    checkFormats('nimbus', this.capabilities, content, 'Nimbus runs bare raw disk images only: convert it first');
    const folder = this.#folderFor(image.access);
    const compression = this.#options.compress;
    const info: ContentInfo = {
      compression,
      size: content.size,
      md5: content.checksums.md5.toLowerCase(),
      sha256: content.checksums.sha256.toLowerCase(),
    };
    // Everything that can be refused is refused here, before the first request.
    const attributes = this.#attributes(folder, toObjectMetadata(image, markers, info));
    const key = objectKey(this.#layout, folder, image.name);
    const what = `nimbus: image "${image.name}" (${this.#client.bucket}/${key})`;
    const deadline = new Deadline(request.timeoutMs, request.signal);
    try {
      return await this.#upload(request, { key, what, compression, attributes }, deadline);
    } finally {
      deadline.dispose();
    }
  }

  async #upload(
    request: CreateRequest,
    target: { key: string; what: string; compression: Compression; attributes: ObjectAttributes },
    deadline: Deadline,
  ): Promise<CloudImage> {
    const { image, markers, content } = request;
    const { key, what, compression } = target;
    const signal = deadline.signal;
    const started = Date.now();

    // S3 PUT replaces silently (and Swift has no conditional PUT): look first, and overwrite only
    // this target's own copy of this same catalog image — a content change, replaced in one atomic PUT
    // under the name users launch (the key cannot change, so "new copy first" happens in place).
    if (await this.#client.exists(key, signal)) {
      const current = this.#map(await this.#client.head(key, signal)).image.markers;
      // A copy of the older marker scheme (no target) is replaced only by the target that claimed
      // it: the planner's rule (docs/ownership.md).
      const sameTarget = current?.target === markers.target || current?.target === undefined;
      if (current?.agent !== markers.agent || !sameTarget || current.imageId !== markers.imageId) {
        throw new VisorError(
          'conflict',
          `${what}: the repository already has an image of that name (delete it, ` +
            `or give this image another name for this cloud)`,
          { details: { key } },
        );
      }
      this.#logger.info("replacing visor's own copy in place", {
        key,
        oldSha256: current.sha256,
        newSha256: markers.sha256,
      });
    }
    const sizeHint = compression === 'none' ? { sizeHint: content.size } : {};
    const write = this.#client.upload(key, target.attributes, { ...sizeHint, signal });
    let committed = false;
    try {
      const original = new DigestStream();
      const stored = compression === 'gzip' ? new DigestStream() : original;
      let reported = 0;
      const sink = new Writable({
        write: (chunk: Buffer, _encoding, callback) => {
          // A source longer than declared fails now, not after uploading the surplus.
          if (original.bytes > content.size) {
            callback(
              new VisorError(
                'integrity',
                `content does not match: size is more than ${content.size} bytes, expected ${content.size}`,
              ),
            );
            return;
          }
          write.write(chunk).then(() => {
            if (request.onProgress && original.bytes !== reported) {
              reported = original.bytes;
              request.onProgress(reported);
            }
            callback();
          }, callback);
        },
      });
      const source = await content.open();
      await pipeline(
        compression === 'gzip' ? [source, original, createGzip(), stored, sink] : [source, original, sink],
        { signal },
      );
      verifyDigest(original.result(), { size: content.size, checksums: content.checksums });
      const bytes = stored.result();
      await write.complete(bytes);
      committed = true;

      const head = await this.#client.head(key, signal);
      if (head.size !== bytes.size)
        throw new VisorError('integrity', `${what}: the repository holds ${head.size} bytes, ${bytes.size} were sent`);
      const mapped = this.#map(head);
      if (!mapped.image.markers) {
        throw new VisorError(
          'unsupported',
          `${what}: the repository did not keep the object metadata visor wrote (x-amz-meta-visor-*), ` +
            `so the image cannot carry visor's markers ` +
            `there${mapped.problems.length > 0 ? ` (${mapped.problems.join('; ')})` : ''}`,
        );
      }
      this.#logger.info('image uploaded to the Cumulus repository', {
        key,
        name: image.name,
        bytes: content.size,
        stored: bytes.size,
        compression,
        multipart: write.multipart,
        seconds: (Date.now() - started) / 1000,
      });
      return mapped.image;
    } catch (error) {
      const failure = deadline.failure(error, {
        timeout: () => `${what}: not uploaded within ${deadline.ms / 1000} s`,
        aborted: () => `${what}: upload aborted`,
        refine: (e) => multipartRefusal(e, what, write.multipart),
        // The content source failed (a store that went away, a broken pipe): nothing was committed.
        otherwise: (e) =>
          new VisorError('unavailable', `${what}: reading the content failed: ${(e as Error).message}`, { cause: e }),
      });
      if (!committed) {
        await write.abort(failure);
        throw failure;
      }
      const remove = (cleanup: AbortSignal) => this.#client.delete(key, cleanup);
      throw await cleanUpAfter(failure, remove, { what: key, logger: this.#logger });
    }
  }

  /**
   * Rewrites the object's metadata with a server-side copy onto itself (MetadataDirective
   * REPLACE): the bytes stay where they are. A change of access moves the object between the
   * user's folder and the common one (copy, then delete the original); its nativeId changes then.
   * The object name (the name users launch) stays the one it was created with; a new generic
   * name is recorded in visor-name.
   */
  async updateMetadata(nativeId: string, image: Image, markers: Markers, options: ClaimedCallOptions = {}) {
    this.#open();
    const location = this.#locate(nativeId);
    const folder = this.#folderFor(image.access);
    const source = await this.#client.head(location.key, options.signal);
    checkClaim(nativeId, this.#map(source).image.markers, options.claim, 'update');
    // What the bytes are does not change: carry the record over (an object visor did not upload has none).
    const attributes = this.#attributes(folder, toObjectMetadata(image, markers, this.#map(source).content));
    const target = objectKey(this.#layout, folder, location.name);
    if (target === nativeId) {
      await this.#client.copy(nativeId, nativeId, source.size, attributes, options.signal);
      return (await this.#checkCopy(source, target, options.signal)).image;
    }
    if (await this.#client.exists(target, options.signal)) {
      throw new VisorError(
        'conflict',
        `nimbus: cannot make "${location.name}" ${image.access}: ${this.#client.bucket}/${target} already exists`,
        { details: { key: target } },
      );
    }
    await this.#client.copy(nativeId, target, source.size, attributes, options.signal);
    let moved: MappedObject;
    try {
      moved = await this.#checkCopy(source, target, options.signal);
      await this.#client.delete(nativeId, options.signal);
    } catch (error) {
      // Leave the image as it was rather than in both folders.
      await this.#client.delete(target).catch((e: unknown) =>
        this.#logger.error('could not remove a copy after a failed move', {
          key: target,
          error: (e as Error).message,
        }),
      );
      throw error;
    }
    this.#logger.info('image moved in the Cumulus repository', { from: nativeId, to: target, access: image.access });
    return moved.image;
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    const why = 'is not possible: Nimbus has no hidden or disabled images, only objects that exist or not';
    checkRetireMode('nimbus', this.capabilities, mode, why);
    const location = this.#locate(nativeId);
    const head = await this.#client.head(location.key, options.signal);
    checkClaim(nativeId, this.#map(head).image.markers, options.claim, mode);
    // Nimbus copies an image to the VMM at launch: deleting it never breaks a running VM.
    await this.#client.delete(location.key, options.signal);
  }

  /** DeleteObject: the one way Nimbus has to remove an image, whatever the retire policy. */
  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    let location: ObjectLocation;
    let head: StoredObject;
    try {
      location = this.#locate(nativeId);
      head = await this.#client.head(location.key, options.signal);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, this.#map(head).image.markers, options.claim, 'discard');
    await this.#client.delete(location.key, options.signal);
  }

  /** The image's bytes: gunzipped when stored compressed, and checked against the record on a full read. */
  async download(
    nativeId: string,
    options: DriverCallOptions & { range?: ByteRange } = {},
  ): Promise<{ stream: Readable; size?: number }> {
    this.#open();
    const location = this.#locate(nativeId);
    const { content } = await this.#head(location, options.signal);
    const what = `nimbus: download of ${this.#client.bucket}/${location.key}`;
    if (content?.compression === 'gzip') {
      const range = options.range ? checkRange(options.range, content.size) : undefined;
      const { stream } = await this.#client.get(location.key, undefined, options.signal);
      const tail = range ? new ByteSlice(range, what) : new VerifyingStream(content, what);
      return { stream: pipelineCallback(stream, createGunzip(), tail, () => undefined), size: content.size };
    }
    const { stream, size } = await this.#client.get(location.key, options.range, options.signal);
    const tail = options.range || !content ? new DownloadTail(what) : new VerifyingStream(content, what);
    return { stream: pipelineCallback(stream, tail, () => undefined), size };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
    this.#frontend?.close();
  }

  /**
   * With the EC2 frontend configured: images Nimbus does not offer are `disabled`; what only the
   * frontend shows, or shows from another repository, is logged (see frontend.ts `reconcile`).
   * A frontend that fails fails the call: a listing that claims "runnable" without asking would
   * be wrong.
   */
  async #offered(images: CloudImage[], options: DriverCallOptions, whole = true): Promise<CloudImage[]> {
    if (!this.#frontend) return images;
    const offered = (await this.#frontend.offered(options)).map((item) =>
      offeredImage(this.#layout, this.#client.bucket, item),
    );
    const result = reconcile(images, offered);
    const sample = (keys: string[]) =>
      keys.slice(0, 5).join(', ') + (keys.length > 5 ? `, and ${keys.length - 5} more` : '');
    if (result.notOffered.length > 0) {
      this.#logger.warn('the Nimbus EC2 frontend does not offer these repository images: reported as disabled', {
        count: result.notOffered.length,
        keys: sample(result.notOffered),
      });
    }
    if (whole && result.onlyOffered.length > 0) {
      this.#logger.warn('the Nimbus EC2 frontend offers images the repository listing does not show', {
        count: result.onlyOffered.length,
        keys: sample(result.onlyOffered),
      });
    }
    if (result.elsewhere.length > 0) {
      this.#logger.warn(
        'the Nimbus EC2 frontend offers images from another repository, bucket, ' +
          "prefix or canonical id than this cloud's options name: check canonicalId, bucket and prefix",
        {
          count: result.elsewhere.length,
          locations: sample(result.elsewhere),
        },
      );
    }
    return result.images;
  }

  #open(): void {
    if (this.#closed) throw new VisorError('internal', 'nimbus driver is closed');
  }

  /** A nativeId is an object key of this user's folder or the common one; anything else is not an image here. */
  #locate(nativeId: string): ObjectLocation {
    const location = locate(this.#layout, nativeId);
    if (!location)
      throw new VisorError(
        'notFound',
        `nimbus: no image ${JSON.stringify(nativeId)}: ` +
          `not a key under ${folderPrefix(this.#layout, 'own')} or ${folderPrefix(this.#layout, 'common')}`,
      );
    return location;
  }

  #folderFor(access: Access): Folder {
    if (access === 'shared')
      throw new VisorError(
        'unsupported',
        "nimbus: Cumulus images are private (the user's folder) " +
          'or public (the common folder); there is no sharing with chosen users',
      );
    return folderOf(access);
  }

  /** Common images are uploaded public-read, as Nimbus's cloud-client does. */
  #attributes(folder: Folder, metadata: Record<string, string>): ObjectAttributes {
    return folder === 'common' ? { metadata, acl: 'public-read' } : { metadata };
  }

  async #head(location: ObjectLocation, signal?: AbortSignal): Promise<MappedObject> {
    return this.#map(await this.#client.head(location.key, signal));
  }

  #map(object: StoredObject): MappedObject {
    const mapped = toCloudImage(this.#layout, object);
    if (mapped.problems.length > 0) {
      this.#logger.warn("repository image has visor metadata that does not decode: it is not claimed as visor's", {
        key: object.key,
        problems: mapped.problems,
      });
    }
    return mapped;
  }

  /** After a copy: same size, same MD5 where both ETags are one, and the metadata kept. */
  async #checkCopy(source: StoredObject, target: string, signal?: AbortSignal): Promise<MappedObject> {
    const copy = await this.#client.head(target, signal);
    const what = `nimbus: copy of ${this.#client.bucket}/${source.key} to ${target}`;
    const before = plainMd5(source.etag);
    const after = plainMd5(copy.etag);
    if (copy.size !== source.size || (before !== undefined && after !== undefined && before !== after)) {
      throw new VisorError(
        'integrity',
        `${what}: the copy has ${copy.size} bytes (MD5 ${after ?? 'unknown'}), ` +
          `the original ${source.size} (MD5 ${before ?? 'unknown'})`,
      );
    }
    const mapped = this.#map(copy);
    if (!mapped.image.markers)
      throw new VisorError(
        'unsupported',
        `${what}: the repository did not keep the object metadata visor wrote (x-amz-meta-visor-*)`,
      );
    return mapped;
  }
}

/** Nimbus's Cumulus has no POST handler, so no multipart uploads: a refusal of one says what to change. */
function multipartRefusal(error: VisorError, what: string, multipart: boolean): VisorError {
  const codes = ['InvalidArgument', 'InvalidRequest', 'NotImplemented', 'MethodNotAllowed'];
  const refused = codes.includes(String(error.details?.['code']));
  if (!multipart || (error.kind !== 'invalidInput' && error.kind !== 'unsupported') || !refused) return error;
  const advice = 'raise partSize above the largest image so that it goes up in one PUT';
  const why = `the repository refused multipart uploads (Nimbus's Cumulus has none); ${advice}`;
  return new VisorError(error.kind, `${what}: ${why} (${error.message})`, {
    cause: error,
    details: { ...error.details },
  });
}

/** `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) results[i] = await fn(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
