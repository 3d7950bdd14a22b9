import { pipeline } from 'node:stream';
import { isVisorError, VisorError } from '../../errors.js';
import type { DiskFormat, Image } from '../../image/model.js';
import { silentLogger, type Logger } from '../../logging/logger.js';
import type { ByteRange } from '../../store/port.js';
import { DigestStream, verifyDigest } from '../../transfer/digest.js';
import {
  checkFormats,
  checkRetireMode,
  checkSharing,
  cleanUpAfter,
  Deadline,
  pollUntil,
  shareDelta,
} from '../kit/index.js';
import { checkClaim } from '../markers.js';
import {
  retireModes as allRetireModes,
  type ClaimedCallOptions,
  type CloudImage,
  type CreateRequest,
  type DriverCallOptions,
  type DriverCapabilities,
  type IaasDriver,
  type Markers,
  type RetireMode,
  type ShareMember,
  type ShareRequest,
  type ShareResult,
} from '../port.js';
import type { MemoryCloud, NativeImage } from './client.js';
import { toCloudImage, toNativeFields } from './mapper.js';
import { parseNativeImage, parseNativeMembers } from './schema.js';

export interface MemoryDriverOptions {
  /** The cloud this driver talks to; drivers of several projects may share one. */
  cloud: MemoryCloud;
  /** Whose images `list` shows and `create` makes (a cloud's project, user or account). */
  project: string;
  /** Default: raw and qcow2 (content in another format is converted by the agent first). */
  diskFormats?: readonly DiskFormat[];
  /** Default: all three; a cloud or its policy may allow fewer, as Glance's `retireModes` option does. */
  retireModes?: readonly RetireMode[];
  /** Images per `list` call (default 100): `list` follows every page. */
  pageSize?: number;
  /**
   * Member projects whose acceptance this driver may give on their behalf (as Glance with the
   * member project's credentials); other members stay `pending` until they accept themselves.
   */
  acceptFor?: readonly string[];
  /** Between status reads while waiting for an image (default 10 ms). */
  pollIntervalMs?: number;
  logger?: Logger;
}

/**
 * The IaasDriver of the memory cloud, and the example to copy when writing an adapter. Each part
 * says why it is there; the four real adapters (adapters/) do the same things for their clouds.
 * In short, a driver:
 * - declares what its cloud can do (`capabilities`): the agent plans from them, never from the
 *   adapter's name;
 * - calls its cloud only through its client, and reads answers only through schema + mapper;
 * - checks the caller's claim on the image read just before every change (`checkClaim`);
 * - in `create`, honours the request's one deadline, verifies what the cloud stored, and
 *   removes what it made when anything fails, saying so in the error (the driver kit);
 * - refuses what it cannot do as `unsupported`, never by doing something else.
 */
export class MemoryDriver implements IaasDriver {
  readonly adapter = 'memory';
  readonly capabilities: DriverCapabilities;
  readonly #cloud: MemoryCloud;
  readonly #project: string;
  readonly #pageSize: number;
  readonly #pollIntervalMs: number;
  readonly #logger: Logger;
  readonly #acceptFor: ReadonlySet<string>;
  #closed = false;

  constructor(options: MemoryDriverOptions) {
    this.#cloud = options.cloud;
    this.#project = options.project;
    this.#pageSize = options.pageSize ?? 100;
    this.#pollIntervalMs = options.pollIntervalMs ?? 10;
    this.#logger = options.logger ?? silentLogger;
    this.#acceptFor = new Set(options.acceptFor ?? []);
    this.#cloud.addProject(this.#project);
    // Frozen: the planner reads these once per run and must see the same answer throughout.
    this.capabilities = Object.freeze({
      diskFormats: options.diskFormats ?? ['raw', 'qcow2'],
      containerFormats: ['bare'],
      retireModes: options.retireModes ?? allRetireModes,
      // Glance-like: a `shared` image is used by its member projects once they accept it.
      access: ['public', 'private', 'shared'],
      // The cloud digests what it stores: create verifies both against the content.
      reportsChecksums: ['md5', 'sha256'],
      reportsSize: true,
      importFromUrl: false,
      requiresUrl: false,
      properties: true,
      tags: true,
      download: true,
      detectsInUse: true,
      reveals: ['hide', 'disable'],
      sharing: Object.freeze({ principal: 'project', acceptance: true } as const),
    } satisfies DriverCapabilities);
  }

  /** The project's images, every page followed: a listing that stops early makes the planner create duplicates. */
  async list(_options: DriverCallOptions = {}): Promise<CloudImage[]> {
    this.#open();
    const images: CloudImage[] = [];
    let marker: string | undefined;
    do {
      const page = await this.#cloud.listPage(this.#project, {
        limit: this.#pageSize,
        ...(marker !== undefined ? { marker } : {}),
      });
      for (const native of page.images) images.push(toCloudImage(parseNativeImage(native, 'listing images')));
      marker = page.next;
    } while (marker !== undefined);
    return images;
  }

  async get(nativeId: string, _options: DriverCallOptions = {}): Promise<CloudImage> {
    this.#open();
    return toCloudImage(await this.#read(nativeId));
  }

  /** Two targets with equal scopes see the same images: the cloud and the project together name it. */
  async scope(): Promise<string> {
    return `memory ${this.#cloud.name} project ${this.#project}`;
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    this.#open();
    const { image, markers, content } = request;
    // Refused before anything exists in the cloud: nothing to clean up, and the message is clear.
    checkFormats('memory', this.capabilities, content);
    // The request's deadline is the only one: the agent passes what is left of its action's time.
    const deadline = new Deadline(request.timeoutMs, request.signal);
    let created: NativeImage | undefined;
    let phase = 'registering';
    try {
      const fields = toNativeFields(image, markers);
      created = await this.#cloud.create(this.#project, {
        ...fields,
        disk_format: content.diskFormat,
        container_format: content.containerFormat,
      });
      phase = 'uploading';
      const digest = new DigestStream();
      // The digest sees every byte on its way: size and sha256 are checked against what the source
      // declared even where the cloud reports nothing (here it does; see the check below).
      const source = pipeline(await content.open(), digest, () => undefined);
      request.onProgress?.(0);
      await this.#cloud.upload(created.id, source, deadline.signal);
      verifyDigest(digest.result(), { size: content.size, checksums: content.checksums });
      request.onProgress?.(content.size);
      phase = 'waiting until active';
      const id = created.id;
      const ready = await pollUntil({
        read: () => this.#read(id),
        done: (native) => {
          if (native.status === 'killed') {
            throw new VisorError('unavailable', `memory: image ${id} failed in the cloud`);
          }
          return native.status === 'active';
        },
        intervalMs: this.#pollIntervalMs,
        signal: deadline.signal,
        // A lost status read must not throw away an upload that may well have worked.
        retryReads: true,
      });
      // What the cloud says it stored, compared with what was sent: the copy is verified, not assumed.
      const stored = toCloudImage(ready);
      verifyDigest(
        { size: stored.size ?? -1, checksums: stored.checksums },
        { size: content.size, checksums: content.checksums },
      );
      this.#logger.info('memory: image created', { nativeId: id, name: image.name, bytes: content.size });
      return stored;
    } catch (error) {
      const failure = deadline.failure(error, {
        timeout: () => `memory: image "${image.name}" was not active within ${deadline.ms / 1000} s (while ${phase})`,
        aborted: () => `memory: creating image "${image.name}" was aborted (while ${phase})`,
      });
      if (!created) throw failure;
      // Whatever was made goes, and the error says whether that worked: a half-made image never stays silently.
      const id = created.id;
      throw await cleanUpAfter(failure, () => this.#cloud.delete(id), { what: `image ${id}`, logger: this.#logger });
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
    // Read just before the change, and refuse (changing nothing) unless the image is the caller's.
    const current = await this.#read(nativeId);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'update');
    // A hidden image stays hidden and keeps its status: updating metadata is not un-retiring.
    return toCloudImage(
      parseNativeImage(
        await this.#cloud.update(nativeId, toNativeFields(image, markers), { replace: true }),
        'updating an image',
      ),
    );
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    checkRetireMode('memory', this.capabilities, mode, 'is not enabled for this cloud');
    const current = await this.#read(nativeId);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, mode);
    if (mode === 'hide') await this.#cloud.update(nativeId, { hidden: true });
    else if (mode === 'disable') await this.#cloud.update(nativeId, { status: 'deactivated' });
    else await this.#delete(current);
  }

  /** Shown and usable again: the hidden flag cleared, a deactivated image active again. */
  async reveal(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    const current = await this.#read(nativeId);
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'reveal');
    if (current.hidden) await this.#cloud.update(nativeId, { hidden: false });
    if (current.status === 'deactivated') await this.#cloud.update(nativeId, { status: 'active' });
  }

  /**
   * Removes the image whatever `retireModes` allows: what a failed create or a broken copy leaves
   * must go, even where the policy never deletes. Gone already is what the caller wants.
   */
  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    let current: NativeImage;
    try {
      current = await this.#read(nativeId);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, toCloudImage(current).markers, options.claim, 'discard');
    await this.#delete(current);
  }

  /** As in Glance, the members of an image that is not `shared` are out of effect: it has none. */
  async members(nativeId: string, _options: DriverCallOptions = {}): Promise<ShareMember[]> {
    this.#open();
    const current = await this.#read(nativeId);
    return current.visibility === 'shared' ? this.#members(nativeId) : [];
  }

  /**
   * Desired-state sharing (the kit's rule): missing members added, visor's unwanted ones removed,
   * others' left. Visibility is not this call's: members need a `shared` image, else `conflict`.
   */
  async share(nativeId: string, request: ShareRequest): Promise<ShareResult> {
    this.#open();
    checkSharing('memory', this.capabilities, request.wanted);
    const current = await this.#read(nativeId);
    checkClaim(nativeId, toCloudImage(current).markers, request.claim, 'share');
    const before = current.visibility === 'shared' ? await this.#members(nativeId) : [];
    const { add, remove } = shareDelta(
      before.map((m) => m.principal),
      request,
    );
    if (add.length > 0 && current.visibility !== 'shared') {
      throw new VisorError(
        'conflict',
        `memory: image ${nativeId} is ${current.visibility}; only a shared image gets members ` +
          '(its access is not widened here)',
      );
    }
    for (const project of remove) await this.#cloud.removeMember(nativeId, project);
    for (const project of add) await this.#cloud.addMember(nativeId, project);
    // Accepting for members whose consent this driver may give, wanted ones only, every call: a
    // membership left pending earlier (a failed accept) is completed on the next sync.
    for (const member of await this.#members(nativeId)) {
      const mine = this.#acceptFor.has(member.principal) && request.wanted.includes(member.principal);
      if (member.status === 'pending' && mine) {
        await this.#cloud.setMemberStatus(nativeId, member.principal, 'accepted');
      }
    }
    return { members: await this.#members(nativeId), added: add, removed: remove };
  }

  async download(nativeId: string, options: DriverCallOptions & { range?: ByteRange } = {}) {
    this.#open();
    return this.#cloud.read(nativeId, options.range);
  }

  async close(): Promise<void> {
    // Nothing to release (a real driver closes its connection pool); safe to call twice all the same.
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new VisorError('internal', 'memory driver used after close()');
  }

  /** One image of this project; another project's image is as unknown as a missing one. */
  async #read(nativeId: string): Promise<NativeImage> {
    const native = parseNativeImage(await this.#cloud.get(nativeId), `reading image ${nativeId}`);
    if (native.project !== this.#project) {
      throw new VisorError('notFound', `memory: no image ${nativeId} in project ${this.#project}`);
    }
    return native;
  }

  async #members(nativeId: string): Promise<ShareMember[]> {
    const what = `reading the members of image ${nativeId}`;
    const native = parseNativeMembers(await this.#cloud.listMembers(nativeId), what);
    return native.map((m) => ({ principal: m.member_id, status: m.status }));
  }

  /** Never an image VMs run from: deleting it would break them (the cloud refuses too). */
  async #delete(current: NativeImage): Promise<void> {
    if (current.users > 0) {
      throw new VisorError(
        'conflict',
        `memory: image ${current.id} is in use by ${current.users} VM(s) and cannot be deleted`,
      );
    }
    await this.#cloud.delete(current.id);
  }
}
