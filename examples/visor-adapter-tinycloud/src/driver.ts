import { buffer } from 'node:stream/consumers';
import { Readable } from 'node:stream';
import {
  type ByteRange,
  checkClaim,
  type ClaimedCallOptions,
  type CloudImage,
  type CreateRequest,
  type DriverCallOptions,
  type DriverCapabilities,
  type IaasDriver,
  type Image,
  isVisorError,
  type Markers,
  type RetireMode,
  VisorError,
} from 'visor';
import { TinyCloudClient } from './client.js';
import type { TinyCloud } from './cloud.js';
import { toCloudImage, toRecord } from './mapper.js';

export interface TinyCloudDriverOptions {
  cloud: TinyCloud;
  project: string;
  token: string;
  pageSize: number;
}

const capabilities: DriverCapabilities = Object.freeze<DriverCapabilities>({
  diskFormats: ['raw', 'qcow2'],
  containerFormats: ['bare'],
  retireModes: ['hide', 'disable', 'delete'],
  access: ['public', 'private'],
  reportsChecksums: ['sha256'],
  reportsSize: true,
  importFromUrl: false,
  requiresUrl: false,
  properties: true,
  tags: true,
  download: true,
  detectsInUse: false,
});

/** visor's IaaS port over the tiny cloud: one project's images. */
export class TinyCloudDriver implements IaasDriver {
  readonly adapter = 'tinycloud';
  readonly capabilities = capabilities;
  readonly #client: TinyCloudClient;
  readonly #options: TinyCloudDriverOptions;
  #closed = false;

  constructor(options: TinyCloudDriverOptions) {
    this.#options = options;
    this.#client = new TinyCloudClient(options.cloud, options.project, options.token);
  }

  async scope(): Promise<string> {
    return `tinycloud:${this.#options.cloud.name}/${this.#options.project}`;
  }

  async list(options: DriverCallOptions = {}): Promise<CloudImage[]> {
    const images: CloudImage[] = [];
    let marker: string | undefined;
    do {
      const page = await this.#client.listPage(this.#options.pageSize, marker, options.signal);
      images.push(...page.records.map(toCloudImage));
      marker = page.next;
    } while (marker !== undefined);
    return images;
  }

  async get(nativeId: string, options: DriverCallOptions = {}): Promise<CloudImage> {
    return toCloudImage(await this.#client.get(nativeId, options.signal));
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    const { content, image, markers } = request;
    if (!capabilities.diskFormats.includes(content.diskFormat)) {
      throw new VisorError(
        'unsupported',
        `tinycloud: ${content.diskFormat} images are not accepted (${capabilities.diskFormats.join(', ')})`,
      );
    }
    if (!capabilities.containerFormats.includes(content.containerFormat)) {
      throw new VisorError('unsupported', `tinycloud: ${content.containerFormat} containers are not accepted`);
    }
    const signals = [
      request.signal,
      request.timeoutMs === undefined ? undefined : AbortSignal.timeout(request.timeoutMs),
    ];
    const signal = AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
    const record = await this.#client.create(toRecord({ ...image, diskFormat: content.diskFormat }, markers), signal);
    try {
      const data = await buffer(await content.open());
      request.onProgress?.(data.length);
      const stored = await this.#client.upload(record.id, data, signal);
      // The cloud's own reading of what it stored, against what visor meant to send.
      if (stored.size !== content.size || stored.sha256 !== content.checksums.sha256) {
        throw new VisorError(
          'integrity',
          `tinycloud: image ${record.id} holds ${stored.size} bytes with sha256 ${stored.sha256}, ` +
            `not the ${content.size} bytes with sha256 ${content.checksums.sha256} that were sent`,
        );
      }
      return toCloudImage(stored);
    } catch (error) {
      await this.discard(record.id);
      throw error;
    }
  }

  async updateMetadata(
    nativeId: string,
    image: Image,
    markers: Markers,
    options: ClaimedCallOptions = {},
  ): Promise<CloudImage> {
    const current = await this.get(nativeId, options);
    checkClaim(nativeId, current.markers, options.claim, 'update');
    const { name, visibility, attributes } = toRecord(image, markers);
    return toCloudImage(await this.#client.update(nativeId, { name, visibility, attributes }, options.signal));
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    if (!capabilities.retireModes.includes(mode))
      throw new VisorError('unsupported', `tinycloud cannot retire by ${mode}`);
    const current = await this.get(nativeId, options);
    checkClaim(nativeId, current.markers, options.claim, mode);
    if (mode === 'hide') await this.#client.update(nativeId, { hidden: true }, options.signal);
    else if (mode === 'disable') await this.#client.update(nativeId, { status: 'disabled' }, options.signal);
    else await this.#client.delete(nativeId, options.signal);
  }

  /**
   * Removes an image entirely, whatever the retire policy says (create's cleanup, or the agent's
   * discard); gone already is fine. With a claim, the image must be the caller's, as for retire.
   */
  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    let current: CloudImage;
    try {
      current = await this.get(nativeId, options);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, current.markers, options.claim, 'discard');
    await this.#client.delete(nativeId, options.signal).catch((error: unknown) => {
      if (!isVisorError(error, 'notFound')) throw error;
    });
  }

  async download(nativeId: string, options: DriverCallOptions & { range?: ByteRange } = {}) {
    const data = await this.#client.read(nativeId, options.signal);
    const { range } = options;
    const part = range ? data.subarray(range.start, range.end === undefined ? undefined : range.end + 1) : data;
    return { stream: Readable.from([part]), size: part.length };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Whether close() was called (the cloud holds no connection to release). */
  get closed(): boolean {
    return this.#closed;
  }
}
