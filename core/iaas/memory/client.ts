import { createHash, randomUUID } from 'node:crypto';
import { addAbortSignal, Readable } from 'node:stream';
import { VisorError } from '../../errors.js';
import { checkRange } from '../../store/keys.js';
import type { ByteRange } from '../../store/port.js';

/**
 * The "cloud" of the memory adapter: an image registry kept in this process, with its own native
 * records and calls, as a real cloud has behind its API. It stands where a real adapter has its
 * wire client (Glance's REST calls, oned's XML-RPC, the S3 and EC2 SDKs): the driver only ever
 * calls these methods and maps what they return (mapper.ts) after checking it (schema.ts). A real
 * client also turns the wire's failures into VisorErrors (core/wire does that for HTTP, S3 and
 * EC2); this one has no wire, so it throws VisorErrors itself.
 *
 * Several drivers may share one MemoryCloud, each for its own project: several targets sharing
 * one real cloud is the case the ownership rules are about. The bits are kept in memory, so this
 * cloud is for tests, demos and trying a config, not for images of real size.
 */

/** Native statuses, Glance-like: what a cloud calls the steps of an image's life, not visor's words. */
export const nativeStatuses = ['queued', 'saving', 'active', 'deactivated', 'killed'] as const;
export type NativeStatus = (typeof nativeStatuses)[number];

/** One image as the memory cloud stores and returns it (snake_case: the cloud's words, not visor's). */
export interface NativeImage {
  id: string;
  /** The project that owns it: `list` shows a project its own images only. */
  project: string;
  name: string;
  status: NativeStatus;
  hidden: boolean;
  visibility: 'public' | 'private';
  disk_format: string;
  container_format: string;
  /** Set once the bits are stored. */
  size?: number;
  md5?: string;
  sha256?: string;
  architecture?: string;
  image_type?: string;
  os_type?: string;
  os_distro?: string;
  os_version?: string;
  min_disk?: number;
  min_ram?: number;
  virtual_size?: number;
  tags: string[];
  /** Free-form key/value pairs; visor's markers live here too (visor_agent, visor_target, ...). */
  properties: Record<string, string>;
  /** VMs running from the image right now: such an image cannot be deleted. */
  users: number;
  created_at: string;
  updated_at: string;
}

/** What a caller may set on a new image or change on an existing one. */
export type NativeFields = Partial<
  Omit<NativeImage, 'id' | 'project' | 'status' | 'size' | 'md5' | 'sha256' | 'users' | 'created_at' | 'updated_at'>
>;

/** Metadata a full replace clears when the new fields leave it out. */
const clearable = [
  'architecture',
  'image_type',
  'os_type',
  'os_distro',
  'os_version',
  'min_disk',
  'min_ram',
  'virtual_size',
] as const;

export interface MemoryCloudOptions {
  /** Names the cloud in scopes and messages (default "memory"). */
  name?: string;
  /**
   * How long an image stays `saving` after its bits arrived before it turns `active`, as a real
   * cloud finishes an upload or import on its own time (default 0: at once, but never within
   * the upload call, so a driver must poll for it as it would elsewhere).
   */
  activationMs?: number;
}

export class MemoryCloud {
  readonly name: string;
  readonly #images = new Map<string, NativeImage>();
  readonly #bits = new Map<string, Buffer>();
  readonly #activationMs: number;

  constructor(options: MemoryCloudOptions = {}) {
    this.name = options.name ?? 'memory';
    this.#activationMs = options.activationMs ?? 0;
  }

  /** One page of a project's images, in id order; `next` is the marker of the page after it. */
  async listPage(
    project: string,
    options: { marker?: string; limit: number },
  ): Promise<{ images: NativeImage[]; next?: string }> {
    const all = [...this.#images.values()]
      .filter((i) => i.project === project)
      .sort((a, b) => a.id.localeCompare(b.id));
    const start = options.marker === undefined ? 0 : all.findIndex((i) => i.id > options.marker!);
    const page = start < 0 ? [] : all.slice(start, start + options.limit);
    const last = page.at(-1);
    const more = last !== undefined && all.indexOf(last) < all.length - 1;
    return { images: page.map(copy), ...(more ? { next: last.id } : {}) };
  }

  async get(id: string): Promise<NativeImage> {
    return copy(this.#find(id));
  }

  /** Registers an image without bits (`queued`), as a real cloud's "create record" call does. */
  async create(
    project: string,
    fields: NativeFields & Pick<NativeImage, 'name' | 'disk_format' | 'container_format'>,
  ): Promise<NativeImage> {
    const now = new Date().toISOString();
    const image: NativeImage = {
      hidden: false,
      visibility: 'private',
      tags: [],
      properties: {},
      ...structuredClone(fields),
      id: `mem-${randomUUID()}`,
      project,
      status: 'queued',
      users: 0,
      created_at: now,
      updated_at: now,
    };
    this.#images.set(image.id, image);
    return copy(image);
  }

  /**
   * Receives the bits of a `queued` image from `source`, stores them with their size and digests,
   * and turns the image `active` (after `activationMs`). A source that fails, or a signal that
   * aborts, kills the image (`killed`): the cloud keeps no partial bits.
   */
  async upload(id: string, source: Readable, signal?: AbortSignal): Promise<void> {
    const image = this.#find(id);
    if (image.status !== 'queued') {
      throw new VisorError(
        'conflict',
        `${this.name}: image ${id} is ${image.status}, not queued: it has its bits already`,
      );
    }
    image.status = 'saving';
    const md5 = createHash('md5');
    const sha256 = createHash('sha256');
    const chunks: Buffer[] = [];
    try {
      signal?.throwIfAborted();
      // A stalled source must not hold the upload past its deadline: the abort ends the read.
      if (signal) addAbortSignal(signal, source);
      for await (const chunk of source) {
        const buffer = chunk as Buffer;
        md5.update(buffer);
        sha256.update(buffer);
        chunks.push(buffer);
      }
    } catch (error) {
      image.status = 'killed';
      source.destroy();
      throw new VisorError(
        'unavailable',
        `${this.name}: the upload of image ${id} failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const bits = Buffer.concat(chunks);
    this.#bits.set(id, bits);
    Object.assign(image, {
      size: bits.length,
      md5: md5.digest('hex'),
      sha256: sha256.digest('hex'),
      updated_at: new Date().toISOString(),
    });
    // Active a moment later, never within this call: a driver must wait for it as for any cloud.
    setTimeout(() => {
      if (this.#images.get(id) === image && image.status === 'saving') image.status = 'active';
    }, this.#activationMs).unref();
  }

  /**
   * Changes an image: the fields given (a PATCH), or, with `replace`, all its metadata (a PUT:
   * optional fields left out are cleared). `status` (de)activates an active image.
   */
  async update(
    id: string,
    changes: NativeFields & { status?: 'active' | 'deactivated' },
    options: { replace?: boolean } = {},
  ): Promise<NativeImage> {
    const image = this.#find(id);
    if (changes.status !== undefined && image.status !== 'active' && image.status !== 'deactivated') {
      throw new VisorError(
        'conflict',
        `${this.name}: image ${id} is ${image.status}: only active images can be (de)activated`,
      );
    }
    if (options.replace) for (const key of clearable) delete image[key];
    Object.assign(image, structuredClone(changes), { updated_at: new Date().toISOString() });
    return copy(image);
  }

  /** Deletes an image and its bits; refused while VMs use it, as OpenNebula and EC2 refuse. */
  async delete(id: string): Promise<void> {
    const image = this.#find(id);
    if (image.users > 0) {
      throw new VisorError('conflict', `${this.name}: image ${id} is in use by ${image.users} VM(s)`);
    }
    this.#images.delete(id);
    this.#bits.delete(id);
  }

  /** The bits of an active (or deactivated) image, or a range of them. */
  async read(id: string, range?: ByteRange): Promise<{ stream: Readable; size: number }> {
    const image = this.#find(id);
    const bits = this.#bits.get(id);
    if (!bits || (image.status !== 'active' && image.status !== 'deactivated')) {
      throw new VisorError('conflict', `${this.name}: image ${id} is ${image.status}: it has no bits to read`);
    }
    if (!range) return { stream: Readable.from([bits]), size: bits.length };
    const { start, end } = checkRange(range, bits.length);
    return { stream: Readable.from([bits.subarray(start, end + 1)]), size: end - start + 1 };
  }

  /** VMs starting (+1) or stopping (-1) from an image: what makes an image "in use". */
  use(id: string, delta: 1 | -1): void {
    const image = this.#find(id);
    image.users = Math.max(0, image.users + delta);
  }

  #find(id: string): NativeImage {
    const image = this.#images.get(id);
    if (!image) throw new VisorError('notFound', `${this.name}: no image ${id}`, { details: { nativeId: id } });
    return image;
  }
}

/** Callers get copies: what they change is not the cloud's record, as with a real API. */
function copy(image: NativeImage): NativeImage {
  return structuredClone(image);
}
