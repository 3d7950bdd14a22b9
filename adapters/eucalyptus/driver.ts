import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isRetryable, isVisorError, VisorError } from '../../core/errors.js';
import {
  checkFormats,
  checkRetireMode,
  cleanUpAfter,
  cleanupMs,
  Deadline,
  pollUntil,
} from '../../core/iaas/kit/index.js';
import { checkSharing, shareDelta } from '../../core/iaas/kit/sharing.js';
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
  ShareMember,
  ShareRequest,
  ShareResult,
} from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger, type Logger } from '../../core/logging/logger.js';
import { createS3Client, type S3ConnectionOptions } from '../../core/wire/s3/client.js';
import type { ByteRange } from '../../core/store/port.js';
import { bundleAndUpload, type BundleResult } from './driver-bundle.js';
import { deriveBundleKey, type BundleIdentity } from './driver-bundle-crypto.js';
import { openUnbundled } from './driver-bundle-download.js';
import { buildManifest, parseManifest, type Manifest } from './mapper-manifest.js';
import { EucalyptusClient } from './client.js';
import { Ec2QueryClient, type Ec2Connection } from '../../core/wire/ec2/client.js';
import {
  acceptedContainerFormats,
  acceptedDiskFormats,
  bundleNameOf,
  parseDescription,
  registrationOf,
  toCloudImage,
} from './mapper.js';
import type { Ec2Image } from '../../core/wire/ec2/schema.js';
import type { BundleAcl } from './schema.js';
import { splitLocation, WalrusBundles } from './client-walrus.js';

export interface EucalyptusDriverOptions {
  ec2: Ec2Connection;
  s3: S3ConnectionOptions;
  /** Bucket and key prefix of the bundles (prefix empty or ending in "/"). */
  bucket: string;
  prefix: string;
  acl: BundleAcl;
  createBucket: boolean;
  /** The user's account id: manifest <user> and the owner filter. */
  accountId: string;
  identity: BundleIdentity;
  partSize: number;
  concurrency: number;
  gzipLevel: number;
  /** After a retryable failure, leave the uploaded parts for the retry instead of deleting them. */
  keepPartsForRetry: boolean;
  tagsSupported: boolean | 'auto';
  maxTags: number;
  /** MaxResults per DescribeImages and DescribeInstances page (AWS); unset for Eucalyptus. */
  pageSize?: number | undefined;
  /** Ask DescribeInstances which images instances use (default true; off by itself where refused). */
  detectInUse?: boolean | undefined;
  /** Default EKI / ERI for paravirtual (ami) machine images. */
  kernelId?: string | undefined;
  ramdiskId?: string | undefined;
  pollIntervalMs: number;
  logger?: Logger;
  clock?: () => Date;
}

/** A manifest is a few KiB per part listed; this bounds what is read before parsing. */
const maxManifestBytes = 8 * 1024 * 1024;
const bundlerVersion = '1';

/**
 * The IaasDriver for Eucalyptus (and AWS-compatible EC2 with S3): bundle -> Walrus ->
 * RegisterImage. README.md lists the native calls, the field mapping, the bundle format and
 * why the capabilities are what they are.
 */
export class EucalyptusDriver implements IaasDriver {
  readonly adapter = 'eucalyptus';
  readonly #o: EucalyptusDriverOptions;
  readonly #logger: Logger;
  readonly #client: EucalyptusClient;
  readonly #walrus: WalrusBundles;
  readonly #now: () => Date;
  #closed = false;

  constructor(options: EucalyptusDriverOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.clock ?? (() => new Date());
    this.#client = new EucalyptusClient({
      ec2: new Ec2QueryClient(options.ec2),
      accountId: options.accountId,
      tagsSupported: options.tagsSupported,
      maxTags: options.maxTags,
      pageSize: options.pageSize,
      detectInUse: options.detectInUse,
      logger: this.#logger,
    });
    this.#walrus = new WalrusBundles({
      client: createS3Client(options.s3),
      bucket: options.bucket,
      acl: options.acl,
      createBucket: options.createBucket,
      // AWS needs the region of a new bucket outside us-east-1; Walrus and the like take none.
      locationConstraint:
        options.s3.endpoint === undefined && options.s3.region !== 'us-east-1' ? options.s3.region : undefined,
      logger: this.#logger,
    });
  }

  /**
   * What EC2 can do here. Without tags (found out by the first call when tagsSupported is
   * 'auto'), properties, labels and os metadata have nowhere to live.
   */
  get capabilities(): DriverCapabilities {
    const tags = this.#client.tagsKnown ?? true;
    return {
      diskFormats: acceptedDiskFormats,
      containerFormats: acceptedContainerFormats,
      // No "disable": EC2 (Eucalyptus) has no state for "registered but not launchable"; see README.md.
      retireModes: ['hide', 'delete'],
      // A shared image is a private one with launch permissions for chosen accounts (`share`).
      access: ['public', 'private'],
      reportsChecksums: [],
      // From the registered bundle's manifest (get and create; list leaves it out).
      reportsSize: true,
      importFromUrl: false,
      requiresUrl: false,
      properties: tags,
      tags,
      download: true,
      // DescribeInstances with an image-id filter; false once the cloud or the credentials refused it.
      detectsInUse: this.#client.instancesKnown ?? true,
      // The hidden stamp removed; launch permissions follow in updateMetadata (access, then sharing).
      reveals: ['hide'],
      maxPropertyLength: 255,
      // Launch permissions by account id: in effect at once, nobody accepts.
      sharing: { principal: 'account', acceptance: false },
    };
  }

  async members(nativeId: string, options: DriverCallOptions = {}): Promise<ShareMember[]> {
    this.#open();
    await this.#client.image(nativeId, options);
    return (await this.#client.launchUsers(nativeId, options)).map((principal) => ({ principal, status: 'granted' }));
  }

  /**
   * Launch permissions for the wanted accounts added, visor's unwanted ones removed (one
   * ModifyImageAttribute), others left. Group `all` (public) is never touched here. Account ids
   * are checked first: EC2 takes 12 digits, and an id it does not know is refused by the cloud.
   */
  async share(nativeId: string, request: ShareRequest): Promise<ShareResult> {
    this.#open();
    checkSharing('eucalyptus', this.capabilities, request.wanted);
    const bad = request.wanted.filter((id) => !/^\d{12}$/.test(id));
    if (bad.length > 0) {
      const why = `eucalyptus: launch permissions name 12-digit account ids, not ${bad.join(', ')}`;
      throw new VisorError('invalidInput', why);
    }
    const current = await this.#client.image(nativeId, request);
    checkClaim(nativeId, toCloudImage(current).markers, request.claim, 'share');
    const { add, remove } = shareDelta(await this.#client.launchUsers(nativeId, request), request);
    await this.#client.changeLaunchUsers(nativeId, add, remove, request);
    const members = await this.members(nativeId, request);
    return { members, added: add, removed: remove };
  }

  async list(options: DriverCallOptions = {}): Promise<CloudImage[]> {
    this.#open();
    await this.#client.tagsSupported(options);
    const images = await this.#client.images(options);
    const using = await this.#client.instancesUsing(
      images.map((i) => i.id),
      options,
    );
    return images.map((i) => toCloudImage(i, using ? { instances: using.get(i.id) ?? [] } : {}));
  }

  async get(nativeId: string, options: DriverCallOptions = {}): Promise<CloudImage> {
    this.#open();
    await this.#client.tagsSupported(options);
    const image = await this.#client.image(nativeId, options);
    const using = await this.#client.instancesUsing([image.id], options);
    return toCloudImage(image, {
      ...(await this.#sizeOf(image, options.signal)),
      ...(using ? { instances: using.get(image.id) ?? [] } : {}),
    });
  }

  /** The EC2 endpoint and the account: `list` asks for Owner=self, the credentials' own images. */
  async scope(): Promise<string> {
    return `eucalyptus ${this.#o.ec2.endpoint ?? `aws ${this.#o.ec2.region}`} account ${this.#o.accountId}`;
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    this.#open();
    checkFormats('eucalyptus', this.capabilities, request.content, 'convert to raw first');
    const deadline = new Deadline(request.timeoutMs, request.signal);
    try {
      return await this.#create(request, deadline);
    } finally {
      deadline.dispose();
    }
  }

  async #create(request: CreateRequest, deadline: Deadline): Promise<CloudImage> {
    const { image, markers, content } = request;
    const signal = deadline.signal;
    const tags = await this.#client.tagsSupported({ signal });
    // Everything that can be refused is refused before anything is sent.
    const registration = registrationOf(image, markers, content.diskFormat, {
      kernelId: this.#o.kernelId,
      ramdiskId: this.#o.ramdiskId,
      tags,
    });
    this.#client.checkMetadata(image, markers, tags);
    const name = bundleNameOf(markers);
    const keyPrefix = this.#o.prefix;
    const manifestKey = `${keyPrefix}${name}.manifest.xml`;
    const location = `${this.#o.bucket}/${manifestKey}`;
    const { key, iv } = deriveBundleKey(this.#o.identity.userPrivateKey, [
      markers.agent,
      markers.imageId,
      markers.sha256,
      name,
      String(this.#o.gzipLevel),
    ]);
    let bundle: BundleResult | undefined;
    let imageId: string | undefined;
    let phase = 'bundling and uploading';
    try {
      await this.#walrus.ensureBucket(signal);
      const existing = await this.#walrus.list(`${keyPrefix}${name}.part.`, signal);
      bundle = await bundleAndUpload({
        source: await content.open(),
        size: content.size,
        expected: content.checksums,
        name,
        keyPrefix,
        key,
        iv,
        partSize: this.#o.partSize,
        concurrency: this.#o.concurrency,
        gzipLevel: this.#o.gzipLevel,
        sink: { put: (k, body, md5, s) => this.#walrus.put(k, body, md5, s) },
        existing,
        signal,
        onProgress: request.onProgress,
        logger: this.#logger,
      });
      const reused = bundle.parts.filter((p) => p.reused).length;
      this.#logger.info('eucalyptus: bundle uploaded', {
        name,
        parts: bundle.parts.length,
        reused,
        bytes: bundle.bundledSize,
      });
      phase = 'verifying the parts in walrus';
      await this.#verifyParts(bundle, name, signal);
      phase = 'writing the manifest';
      const manifest = buildManifest(
        {
          architecture: registration.architecture,
          kernelId: registration.manifestKernelId,
          ramdiskId: registration.manifestRamdiskId,
          name,
          user: this.#o.accountId,
          type: registration.type,
          tarSha1: bundle.tarSha1,
          size: bundle.size,
          bundledSize: bundle.bundledSize,
          key,
          iv,
          parts: bundle.parts.map((p) => ({ filename: p.filename, sha1: p.sha1 })),
          bundlerVersion,
        },
        this.#o.identity,
      );
      const manifestBody = Buffer.from(manifest, 'utf8');
      await this.#walrus.put(
        manifestKey,
        manifestBody,
        createHash('md5').update(manifestBody).digest('hex'),
        signal,
        'text/xml',
      );
      phase = 'registering';
      const registered = await this.#client.register(registration, location, { signal });
      imageId = registered.imageId;
      this.#logger.info('eucalyptus: image registered', { nativeId: imageId, location, adopted: registered.adopted });
      phase = 'writing markers';
      let current = await this.#client.image(imageId, { signal });
      await this.#client.writeMetadata(current, image, markers, undefined, { signal });
      if (image.access === 'public') await this.#client.setAccess(current, 'public', { signal });
      phase = 'waiting until available';
      const waiting = (state: string) => (phase = `waiting until available (still ${state})`);
      current = await this.#waitAvailable(imageId, signal, waiting);
      return toCloudImage(current, { size: bundle.size });
    } catch (error) {
      const failure = deadline.failure(error, {
        timeout: () => `eucalyptus: create did not finish before the deadline (while ${phase})`,
        aborted: () => `eucalyptus: create was aborted (while ${phase})`,
        otherwise: (e) =>
          new VisorError('internal', `eucalyptus: create failed while ${phase}: ${(e as Error).message}`, { cause: e }),
      });
      throw await this.#cleanUp(imageId, name, failure);
    }
  }

  async updateMetadata(nativeId: string, image: Image, markers: Markers, options: ClaimedCallOptions = {}) {
    this.#open();
    const current = await this.#client.image(nativeId, options);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'update');
    const hiddenAt =
      EucalyptusClient.hiddenAt(current) ??
      (parseDescription(current.description).hidden ? this.#now().toISOString() : undefined);
    await this.#client.writeMetadata(current, image, markers, hiddenAt, options);
    // A hidden image stays private whatever the catalog says: only `reveal` shows it again.
    const access = hiddenAt !== undefined ? 'private' : image.access === 'public' ? 'public' : 'private';
    if ((access === 'public') !== current.isPublic) await this.#client.setAccess(current, access, options);
    return this.get(nativeId, options);
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    const why = 'is not possible: EC2 has no disabled-but-registered state (hide: private; delete: deregistered)';
    checkRetireMode('eucalyptus', this.capabilities, mode, why);
    const image = await this.#client.image(nativeId, options);
    checkClaim(nativeId, toCloudImage(image).markers, options.claim, mode);
    if (mode === 'hide') {
      const markers = toCloudImage(image).markers;
      await this.#client.revokeAll(image, options);
      if (EucalyptusClient.hiddenAt(image) === undefined && !parseDescription(image.description).hidden) {
        const generic = this.#asImage(image);
        if (markers) await this.#client.writeMetadata(image, generic, markers, this.#now().toISOString(), options);
      }
      return;
    }
    await this.#delete(image, options.signal);
  }

  /** Undoes hide: the hidden stamp (tag or Description flag) removed, so that updates grant access again. */
  async reveal(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    const image = await this.#client.image(nativeId, options);
    const markers = toCloudImage(image).markers;
    checkClaim(nativeId, markers, options.claim, 'reveal');
    const hidden = EucalyptusClient.hiddenAt(image) !== undefined || parseDescription(image.description).hidden;
    if (hidden && markers) await this.#client.writeMetadata(image, this.#asImage(image), markers, undefined, options);
  }

  /** Deregisters the image and deletes its bundle, whatever the retire policy allows. */
  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    let image: Ec2Image;
    try {
      image = await this.#client.image(nativeId, options);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, toCloudImage(image).markers, options.claim, 'discard');
    await this.#delete(image, options.signal);
  }

  async #delete(image: Ec2Image, signal?: AbortSignal): Promise<void> {
    // AWS deregisters an image instances run from; Eucalyptus refuses. Either way visor does not.
    const instances = (await this.#client.instancesUsing([image.id], { signal }))?.get(image.id) ?? [];
    if (instances.length > 0) {
      const shown = instances.slice(0, 5).join(', ') + (instances.length > 5 ? ', ...' : '');
      throw new VisorError(
        'conflict',
        `eucalyptus: image ${image.id} is in use by ${instances.length} instance(s) (${shown}) ` +
          'and cannot be deregistered',
        { details: { nativeId: image.id, instances: instances.length } },
      );
    }
    await this.#client.deregister(image.id, { signal });
    this.#logger.info('eucalyptus: image deregistered', { nativeId: image.id });
    await this.#deleteBundleOf(image);
  }

  async download(
    nativeId: string,
    options: DriverCallOptions & { range?: ByteRange } = {},
  ): Promise<{ stream: Readable; size?: number }> {
    this.#open();
    const image = await this.#client.image(nativeId, options);
    const where = image.location !== undefined ? splitLocation(image.location) : undefined;
    if (!where?.key.endsWith('.manifest.xml')) {
      throw new VisorError(
        'unsupported',
        `eucalyptus: image ${nativeId} is not an S3 bundle (location ${image.location ?? 'none'}); ` +
          `only bundled images can be downloaded`,
      );
    }
    const manifest = await this.#manifest(where.bucket, where.key, options.signal);
    const { stream, size } = openUnbundled({
      walrus: this.#walrus,
      bucket: where.bucket,
      manifestKey: where.key,
      manifest,
      identity: this.#o.identity,
      range: options.range,
      signal: options.signal,
    });
    return { stream, size };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
    this.#walrus.close();
  }

  #open(): void {
    if (this.#closed) throw new VisorError('internal', 'eucalyptus driver used after close()');
  }

  async #manifest(bucket: string, key: string, signal?: AbortSignal): Promise<Manifest> {
    return parseManifest(await this.#walrus.getText(key, maxManifestBytes, signal, bucket), `${bucket}/${key}`);
  }

  /** The unbundled size from the manifest of a bundle in our bucket; nothing when it cannot be read. */
  async #sizeOf(image: Ec2Image, signal?: AbortSignal): Promise<{ size?: number }> {
    const where = image.location !== undefined ? splitLocation(image.location) : undefined;
    if (!where || where.bucket !== this.#o.bucket || !where.key.endsWith('.manifest.xml')) return {};
    try {
      return { size: (await this.#manifest(where.bucket, where.key, signal)).image.size };
    } catch (error) {
      if (isVisorError(error) && (error.kind === 'notFound' || error.kind === 'forbidden')) return {};
      throw error;
    }
  }

  /** Lists the uploaded parts again and compares size and ETag (MD5) with what was sent. */
  async #verifyParts(bundle: BundleResult, name: string, signal: AbortSignal): Promise<void> {
    const stored = await this.#walrus.list(`${this.#o.prefix}${name}.part.`, signal);
    const problems: string[] = [];
    for (const part of bundle.parts) {
      const object = stored.get(part.key);
      if (!object) problems.push(`${part.filename} is missing`);
      else if (object.size !== part.size)
        problems.push(`${part.filename} is ${object.size} bytes, ${part.size} were sent`);
      else if (object.etag !== part.md5)
        problems.push(`${part.filename} has ETag ${object.etag}, the part's MD5 is ${part.md5}`);
    }
    // Parts past the last one (from an earlier bundle of other content under this name cannot
    // exist: the name carries the content hash) are removed so the bundle is exactly the manifest's.
    const extra = [...stored.keys()].filter((k) => !bundle.parts.some((p) => p.key === k));
    if (extra.length > 0) await this.#walrus.delete(extra);
    if (problems.length > 0)
      throw new VisorError(
        'integrity',
        `eucalyptus: the bundle in walrus does not match what was sent: ${problems.slice(0, 5).join('; ')}`,
        { details: { problems } },
      );
  }

  async #waitAvailable(imageId: string, signal: AbortSignal, onState: (state: string) => void): Promise<Ec2Image> {
    return pollUntil({
      read: (readSignal) => this.#client.image(imageId, { signal: readSignal }),
      intervalMs: this.#o.pollIntervalMs,
      signal,
      done: (image) => {
        onState(image.state);
        if (image.state === 'available') return true;
        if (image.state === 'pending' || image.state === 'transient') return false;
        const reason = image.stateReason ? ` (${image.stateReason})` : '';
        const what = `eucalyptus: image ${imageId} went to state ${image.state}${reason} instead of available`;
        throw new VisorError('unavailable', what, {
          details: { nativeId: imageId, state: image.state },
        });
      },
    });
  }

  /**
   * Removes what a failed create left: the registration, the manifest, and the parts - except
   * after a retryable failure (unavailable, timeout), when the parts stay for the retry, which
   * finds them by name and does not send them again. Returns `cause` with the outcome of the
   * deregistration added; never throws.
   */
  async #cleanUp(imageId: string | undefined, name: string, cause: VisorError): Promise<VisorError> {
    let failure = cause;
    if (imageId !== undefined) {
      const remove = (signal: AbortSignal) => this.#client.deregister(imageId, { signal });
      failure = await cleanUpAfter(cause, remove, { what: `image ${imageId}`, logger: this.#logger, attempts: 1 });
    }
    const keepParts = this.#o.keepPartsForRetry && isRetryable(cause);
    try {
      const signal = AbortSignal.timeout(cleanupMs);
      const stored = await this.#walrus.list(`${this.#o.prefix}${name}.`, signal);
      const keys = [...stored.keys()].filter((k) => !keepParts || k.endsWith('.manifest.xml'));
      const errors = await this.#walrus.delete(keys);
      if (errors.length > 0) throw errors[0];
      if (keepParts)
        this.#logger.warn('eucalyptus: bundle parts kept in walrus for the retry of a failed create', {
          name,
          reason: cause.message,
        });
      else if (keys.length > 0)
        this.#logger.warn('eucalyptus: bundle removed after a failed create', {
          name,
          objects: keys.length,
          reason: cause.message,
        });
    } catch (error) {
      // A retry of the same create finds these parts and does not send them again.
      this.#logger.error('eucalyptus: bundle objects left in walrus after a failed create', {
        name,
        error: (error as Error).message,
      });
    }
    return failure;
  }

  /** Deletes the manifest and parts of a deregistered image, when they are in our bucket. */
  async #deleteBundleOf(image: Ec2Image): Promise<void> {
    const where = image.location !== undefined ? splitLocation(image.location) : undefined;
    if (!where || where.bucket !== this.#o.bucket || !where.key.endsWith('.manifest.xml')) {
      this.#logger.info("eucalyptus: the bundle is not in the adapter's bucket and was left alone", {
        nativeId: image.id,
        location: image.location,
      });
      return;
    }
    const folder = where.key.slice(0, where.key.lastIndexOf('/') + 1);
    const stem = where.key.slice(folder.length, -'.manifest.xml'.length);
    let keys: string[];
    try {
      const manifest = await this.#manifest(where.bucket, where.key);
      keys = manifest.image.parts.part.map((p) => folder + p.filename);
    } catch (error) {
      if (!isVisorError(error, 'notFound') && !isVisorError(error, 'invalidResponse')) throw error;
      keys = [];
    }
    // Parts named as this adapter names them, even those a broken manifest does not list.
    keys.push(...[...(await this.#walrus.list(`${folder}${stem}.part.`)).keys()], where.key);
    const errors = await this.#walrus.delete([...new Set(keys)]);
    if (errors.length > 0)
      throw new VisorError(
        errors[0]!.kind,
        `eucalyptus: image ${image.id} is deregistered but ${errors.length} bundle object(s) ` +
          `could not be deleted: ${errors[0]!.message}`,
      );
    this.#logger.info('eucalyptus: bundle deleted', { nativeId: image.id, objects: new Set(keys).size });
  }

  /** Just enough of a generic image to rewrite an image's own metadata (hide keeps everything else). */
  #asImage(image: Ec2Image): Image {
    const cloud = toCloudImage(image);
    const markers = cloud.markers!;
    return {
      id: markers.imageId,
      name: cloud.name,
      architecture: cloud.metadata.architecture ?? 'x86_64',
      type: cloud.metadata.type ?? 'machine',
      access: 'private',
      members: [],
      status: 'available',
      checksums: {},
      tags: cloud.metadata.tags ?? [],
      properties: cloud.metadata.properties ?? {},
      ...(cloud.metadata.os ? { os: cloud.metadata.os } : {}),
      ...(cloud.metadata.minDisk !== undefined ? { minDisk: cloud.metadata.minDisk } : {}),
      ...(cloud.metadata.minRam !== undefined ? { minRam: cloud.metadata.minRam } : {}),
      ...(cloud.metadata.virtualSize !== undefined ? { virtualSize: cloud.metadata.virtualSize } : {}),
      createdAt: this.#now().toISOString(),
      updatedAt: this.#now().toISOString(),
      revision: markers.revision,
    };
  }
}
