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
import type { Access, DiskFormat, Image } from '../../core/image/model.js';
import { silentLogger, type Logger } from '../../core/logging/logger.js';
import type { ByteRange } from '../../core/store/port.js';
import { tagPattern } from '../../core/wire/oci/media.js';
import { ArtifactRepository, type OciClientOptions, type TaggedArtifact } from './client.js';
import { manifestFor, tagFor, toCloudImage } from './mapper.js';

export interface OciDriverOptions extends OciClientOptions {
  /** The repository this target publishes to: each catalog image is one tag of it. */
  repository: string;
  /**
   * Who may pull from the repository, as the registry is set up (visor cannot change it):
   * `public` (anonymous pulls) or `private`. A private catalog image is never pushed to a
   * public repository.
   */
  access: Extract<Access, 'public' | 'private'>;
  diskFormats?: readonly DiskFormat[];
  /** Tags per page when listing (default 100). */
  pageSize?: number;
  /** Manifests read at once while listing (default 8). */
  readConcurrency?: number;
  logger?: Logger;
}

/**
 * An OCI registry as a sync target: the catalog's images published as ORAS-style artifacts
 * (empty config, one `application/x-qemu-disk` layer, annotations with visor's metadata and
 * markers), one tag per image in one repository, kept in step like a cloud's images: a new
 * image is pushed, new content is a new tag (the planner's replace), new metadata a new
 * manifest under the same tag, and a retired image's manifest is deleted.
 */
export class OciDriver implements IaasDriver {
  readonly adapter = 'oci';
  readonly capabilities: DriverCapabilities;
  readonly #repo: ArtifactRepository;
  readonly #access: 'public' | 'private';
  readonly #pageSize: number;
  readonly #concurrency: number;
  readonly #logger: Logger;
  #closed = false;

  constructor(options: OciDriverOptions) {
    const { repository, access, diskFormats, pageSize, readConcurrency, logger, ...client } = options;
    this.#repo = new ArtifactRepository({ ...client, repository });
    this.#access = access;
    this.#pageSize = pageSize ?? 100;
    this.#concurrency = readConcurrency ?? 8;
    this.#logger = logger ?? silentLogger;
    this.capabilities = Object.freeze({
      diskFormats: diskFormats ?? ['qcow2', 'raw'],
      containerFormats: ['bare'],
      // A registry deletes manifests; it has no hidden or disabled tags.
      retireModes: ['delete'],
      access: [access],
      // The layer's digest is its sha256, checked by the registry on upload and by visor after.
      reportsChecksums: ['sha256'],
      reportsSize: true,
      importFromUrl: false,
      requiresUrl: false,
      properties: true,
      tags: true,
      download: true,
      detectsInUse: false,
    } satisfies DriverCapabilities);
  }

  async list(options: DriverCallOptions = {}): Promise<CloudImage[]> {
    this.#open();
    const tags = await this.#repo.tags(this.#pageSize, options.signal);
    const images: CloudImage[] = [];
    for (let i = 0; i < tags.length; i += this.#concurrency) {
      const batch = tags.slice(i, i + this.#concurrency);
      const read = await Promise.all(
        batch.map((tag) =>
          this.#repo.read(tag, options.signal).catch((error: unknown) => {
            // A tag deleted between the listing and the read is simply not there any more.
            if (isVisorError(error, 'notFound')) return undefined;
            throw error;
          }),
        ),
      );
      for (const artifact of read) if (artifact) images.push(toCloudImage(artifact, this.#access));
    }
    return images;
  }

  async scope(): Promise<string> {
    return `oci ${this.#repo.registry}/${this.#repo.repository}`;
  }

  async get(nativeId: string, options: DriverCallOptions = {}): Promise<CloudImage> {
    this.#open();
    return toCloudImage(await this.#read(nativeId, options.signal), this.#access);
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    this.#open();
    const { image, markers } = request;
    const tag = tagFor(image);
    const existing = await this.#read(tag).catch((error: unknown) => {
      if (isVisorError(error, 'notFound')) return undefined;
      throw error;
    });
    const existingMarkers = existing ? toCloudImage(existing, this.#access).markers : undefined;
    // A tag of the same name that is not a leftover of this very image is someone else's.
    if (existing && (existingMarkers?.imageId !== markers.imageId || existingMarkers.agent !== markers.agent)) {
      throw new VisorError('conflict', `oci: tag ${tag} of ${this.#where()} exists and is not this image's`);
    }
    return this.#push(tag, request, !existing);
  }

  /**
   * Pushes a catalog image under a tag of the caller's choosing (`visor publish`): an existing
   * tag is moved to the new manifest, as `oras push` does. Without markers, no agent ever
   * claims the result; the same checks and verification as `create`.
   */
  async publish(tag: string, request: Omit<CreateRequest, 'markers'> & { markers?: Markers }): Promise<CloudImage> {
    this.#open();
    if (!tagPattern.test(tag)) throw new VisorError('invalidInput', `"${tag}" is not a valid tag`);
    return this.#push(tag, request, false);
  }

  /** Layer, config, manifest; verified; on failure the manifest removed again when `ownTag`. */
  async #push(
    tag: string,
    request: Omit<CreateRequest, 'markers'> & { markers?: Markers },
    ownTag: boolean,
  ): Promise<CloudImage> {
    const { image, markers, content } = request;
    checkFormats('oci', this.capabilities, content);
    if (image.access !== this.#access && !(image.access === 'public' && this.#access === 'private')) {
      throw new VisorError(
        'unsupported',
        `oci: ${this.#where()} is a ${this.#access} repository; a ${image.access} image is not published to it`,
      );
    }
    const deadline = new Deadline(request.timeoutMs, request.signal);
    let pushed = false;
    let phase = 'uploading';
    try {
      const layer = { digest: `sha256:${content.checksums.sha256}`, size: content.size };
      request.onProgress?.(0);
      await this.#repo.pushLayer(
        { ...layer, open: (range) => content.open(range) },
        { signal: deadline.signal, ...(request.onProgress ? { onProgress: request.onProgress } : {}) },
      );
      phase = 'putting the manifest';
      await this.#repo.putManifest(tag, manifestFor(image, markers, content.diskFormat, layer, tag));
      pushed = true;
      phase = 'verifying';
      const stored = toCloudImage(await this.#read(tag), this.#access);
      const size = await this.#repo.blobSize(layer.digest);
      if (
        stored.size !== content.size ||
        size !== content.size ||
        stored.checksums.sha256 !== content.checksums.sha256
      ) {
        throw new VisorError('integrity', `oci: ${this.#where()}:${tag} does not hold the layer that was pushed`);
      }
      this.#logger.info('oci: image published', { tag, name: image.name, bytes: content.size });
      return stored;
    } catch (error) {
      const failure = deadline.failure(error, {
        timeout: () => `oci: publishing "${image.name}" took over ${deadline.ms / 1000} s (while ${phase})`,
        aborted: () => `oci: publishing "${image.name}" was aborted (while ${phase})`,
      });
      if (!pushed || !ownTag) throw failure;
      throw await cleanUpAfter(failure, () => this.#deleteTag(tag), { what: `tag ${tag}`, logger: this.#logger });
    } finally {
      deadline.dispose();
    }
  }

  async updateMetadata(
    nativeId: string,
    image: Image,
    markers: Markers,
    options: ClaimedCallOptions = {},
  ): Promise<CloudImage> {
    this.#open();
    const current = await this.#read(nativeId);
    checkClaim(nativeId, toCloudImage(current, this.#access).markers, options.claim, 'update');
    const layer = current.manifest.layer;
    if (!layer) throw new VisorError('unsupported', `oci: ${this.#where()}:${nativeId} is not a disk artifact`);
    const diskFormat = toCloudImage(current, this.#access).diskFormat ?? image.diskFormat ?? 'raw';
    // Same layer, new annotations: a new manifest under the same tag; the bits are not sent again.
    await this.#repo.putManifest(nativeId, manifestFor(image, markers, diskFormat, layer, nativeId));
    return toCloudImage(await this.#read(nativeId), this.#access);
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    checkRetireMode('oci', this.capabilities, mode, 'is not something a registry has');
    const current = await this.#read(nativeId);
    checkClaim(nativeId, toCloudImage(current, this.#access).markers, options.claim, mode);
    await this.#repo.deleteManifest(current.digest);
  }

  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    let current: TaggedArtifact;
    try {
      current = await this.#read(nativeId);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, toCloudImage(current, this.#access).markers, options.claim, 'discard');
    await this.#repo.deleteManifest(current.digest);
  }

  async download(nativeId: string, options: DriverCallOptions & { range?: ByteRange } = {}) {
    this.#open();
    if (options.range) {
      throw new VisorError('unsupported', 'oci: ranged downloads are not offered (a layer is verified whole)');
    }
    const { manifest } = await this.#read(nativeId, options.signal);
    if (!manifest.layer)
      throw new VisorError('unsupported', `oci: ${this.#where()}:${nativeId} is not a disk artifact`);
    return this.#repo.blob(manifest.layer, options.signal);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#repo.close();
  }

  #open(): void {
    if (this.#closed) throw new VisorError('internal', 'oci driver used after close()');
  }

  #where(): string {
    return `${this.#repo.registry}/${this.#repo.repository}`;
  }

  async #read(tag: string, signal?: AbortSignal): Promise<TaggedArtifact> {
    if (!tagPattern.test(tag)) throw new VisorError('notFound', `oci: "${tag}" is not a tag of ${this.#where()}`);
    return this.#repo.read(tag, signal);
  }

  /** Deletes the manifest a tag names now (only it: each of visor's manifests names its own tag). */
  async #deleteTag(tag: string): Promise<void> {
    const digest = await this.#repo.digestOf(tag);
    if (digest) await this.#repo.deleteManifest(digest);
  }
}
