import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, stat, unlink } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { isVisorError, VisorError } from '../../core/errors.js';
import {
  checkFormats,
  checkRetireMode,
  checkSharing,
  cleanUpAfter,
  Deadline,
  pollUntil,
  shareDelta,
} from '../../core/iaas/kit/index.js';
import { checkClaim } from '../../core/iaas/markers.js';
import type {
  ClaimedCallOptions,
  CloudImage,
  ContentSource,
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
import { checkRange } from '../../core/store/keys.js';
import type { ByteRange } from '../../core/store/port.js';
import { DigestStream, verifyDigest } from '../../core/transfer/digest.js';
import { OneClient, type PoolFilter } from './client.js';
import {
  accessOf,
  allocationAttributes,
  expiredName,
  octalPermissions,
  oneAttributes,
  originalName,
  permissionsFor,
  stateOf,
  toCloudImage,
  updateAttributes,
  type ReadOptions,
  type WriteOptions,
} from './mapper.js';
import { oneDatastoreTypes, oneImageStates, type OneDatastore, type OneImage } from './schema.js';
import { nameProblem, serializeTemplate } from './mapper-template.js';

const MiB = 1024 * 1024;
const mbOf = (bytes: number) => Math.ceil(bytes / MiB);

export type OpenNebulaMode = 'remote' | 'local';

export interface OpenNebulaDriverOptions {
  endpoint: string;
  username: string;
  password: string;
  /** Image datastore (IMAGE_DS) for machine images: name or id. */
  datastore: string | number;
  /** File datastore (FILE_DS) for kernel and ramdisk images; without it they are `unsupported`. */
  filesDatastore?: string | number | undefined;
  /**
   * `remote`: PATH is ContentSource.url, which oned fetches (the agent serves it).
   * `local`: the agent runs beside oned; PATH is a file (a file: URL, or the content staged in `stagingDir`).
   */
  mode: OpenNebulaMode;
  stagingDir?: string | undefined;
  imageType: WriteOptions['imageType'];
  devPrefix?: string | undefined;
  persistent: boolean;
  /** Which images `list` asks for (one.imagepool.info filter). */
  ownership: PoolFilter;
  /** Images per one.imagepool.info call; 0 asks for the whole pool at once. */
  pageSize: number;
  requestTimeoutMs: number;
  pollIntervalMs: number;
  /** Longest wait for oned to finish a delete when the caller set no deadline (default 15 minutes). */
  deleteWaitMs?: number;
  retire: { expiredPrefix: string; chmod: string };
  /**
   * The group visor's images belong to when shared with no one (usually the user's primary group):
   * with it, an image is shared with a group by moving it there (one.image.chown) and back.
   */
  homeGroup?: number;
  maxResponseBytes: number;
  logger?: Logger;
  clock?: () => Date;
}

/**
 * The IaasDriver for OpenNebula over XML-RPC. README.md lists the native calls, the field
 * mapping, and why the capabilities are what they are.
 */
export class OpenNebulaDriver implements IaasDriver {
  readonly adapter = 'opennebula';
  readonly capabilities: DriverCapabilities;
  readonly #options: OpenNebulaDriverOptions;
  readonly #client: OneClient;
  readonly #logger: Logger;
  readonly #read: ReadOptions;
  readonly #write: WriteOptions;
  readonly #retirePermissions: number[];
  readonly #now: () => Date;
  #closed = false;

  constructor(options: OpenNebulaDriverOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.clock ?? (() => new Date());
    this.#retirePermissions = octalPermissions(options.retire.chmod);
    this.#read = { expiredPrefix: options.retire.expiredPrefix };
    this.#write = { imageType: options.imageType, persistent: options.persistent, devPrefix: options.devPrefix };
    this.#client = new OneClient({
      endpoint: options.endpoint,
      username: options.username,
      password: options.password,
      timeoutMs: options.requestTimeoutMs,
      maxResponseBytes: options.maxResponseBytes,
    });
    const remote = options.mode === 'remote';
    this.capabilities = Object.freeze({
      diskFormats: ['raw', 'qcow2', 'iso', 'aki', 'ari'],
      containerFormats: ['bare'],
      // No "hide": oned has no hidden-but-usable flag; see README.md.
      retireModes: ['disable', 'delete'],
      access: ['public', 'private', 'shared'],
      // SIZE is whole MiB and oned computes no checksum of what it stores.
      reportsChecksums: [],
      reportsSize: false,
      importFromUrl: remote,
      requiresUrl: remote,
      properties: true,
      tags: true,
      // SOURCE is a file only a co-located agent can read.
      download: !remote,
      detectsInUse: true,
      // ENABLE, the EXPIRED_ prefix taken off the name, the expiry stamp cleared.
      reveals: ['disable'],
      // One group per image: sharing moves the image to it (GROUP_U comes with access `shared`).
      ...(options.homeGroup !== undefined
        ? { sharing: Object.freeze({ principal: 'group', maxPrincipals: 1, acceptance: false } as const) }
        : {}),
    } satisfies DriverCapabilities);
  }

  async list(options: DriverCallOptions = {}): Promise<CloudImage[]> {
    this.#open();
    const { ownership, pageSize } = this.#options;
    if (pageSize <= 0)
      return (await this.#client.imagePool(ownership, -1, -1, options.signal)).map((i) => toCloudImage(i, this.#read));
    const seen = new Map<number, OneImage>();
    for (let offset = 0; ; offset += pageSize) {
      const page = await this.#client.imagePool(ownership, offset, -pageSize, options.signal);
      let added = 0;
      for (const image of page) {
        if (!seen.has(image.id)) added++;
        seen.set(image.id, image);
      }
      // A short page is the last; a page of nothing new means oned ignored the paging.
      if (page.length < pageSize || added === 0) break;
    }
    return [...seen.values()].map((i) => toCloudImage(i, this.#read));
  }

  async get(nativeId: string, options: DriverCallOptions = {}): Promise<CloudImage> {
    this.#open();
    return toCloudImage(await this.#client.image(imageIdOf(nativeId), options.signal), this.#read);
  }

  /** oned and the user: with the default ownership (`mine`), `list` shows that user's images only. */
  async scope(): Promise<string> {
    return `opennebula ${this.#options.endpoint} user ${this.#options.username}`;
  }

  async create(request: CreateRequest): Promise<CloudImage> {
    this.#open();
    const { image, markers, content } = request;
    checkFormats('opennebula', this.capabilities, content, 'convert the image for this cloud');
    // Everything that can be refused is refused before anything exists in the cloud.
    const attributes = allocationAttributes(image, markers, content.diskFormat, this.#write);
    serializeTemplate(attributes, `image ${image.id} cannot be written to OpenNebula`);
    const fileType = attributes['TYPE'] === 'KERNEL' || attributes['TYPE'] === 'RAMDISK';
    const datastoreRef = fileType ? this.#options.filesDatastore : this.#options.datastore;
    if (datastoreRef === undefined) {
      throw new VisorError(
        'unsupported',
        'opennebula: kernel and ramdisk images live in a file datastore (FILE_DS); set the filesDatastore option',
      );
    }
    const remoteUrl = this.#options.mode === 'remote' ? remoteUrlOf(content) : undefined;
    const deadline = new Deadline(request.timeoutMs, request.signal);
    try {
      return await this.#create(request, attributes, datastoreRef, fileType, remoteUrl, deadline);
    } finally {
      deadline.dispose();
    }
  }

  async #create(
    request: CreateRequest,
    attributes: Record<string, string>,
    datastoreRef: string | number,
    fileType: boolean,
    remoteUrl: string | undefined,
    deadline: Deadline,
  ): Promise<CloudImage> {
    const { image, content } = request;
    const signal = deadline.signal;
    const words = (doing: () => string) => ({
      timeout: () => `opennebula: image ${image.name} was not ready within ${deadline.ms / 1000} s (${doing()})`,
      aborted: () => `opennebula: creating image ${image.name} was aborted (${doing()})`,
    });
    let datastore: OneDatastore;
    let staged: { path: string; temporary: boolean } | undefined;
    try {
      const type = fileType ? oneDatastoreTypes.FILE_DS : oneDatastoreTypes.IMAGE_DS;
      datastore = await this.#datastore(datastoreRef, type, signal);
      const neededMb = mbOf(Math.max(content.size, content.diskFormat === 'qcow2' ? (image.virtualSize ?? 0) : 0));
      if (neededMb > datastore.freeMb) {
        throw new VisorError(
          'unavailable',
          `opennebula: datastore ${datastore.name} has ${datastore.freeMb} MB free, ` +
            `image ${image.name} needs ${neededMb} MB`,
          {
            details: { datastore: datastore.id, freeMb: datastore.freeMb, neededMb },
          },
        );
      }
      staged = remoteUrl === undefined ? await this.#localPath(content, image.id, signal) : undefined;
    } catch (error) {
      if (staged?.temporary) await unlink(staged.path).catch(() => undefined);
      throw deadline.failure(
        error,
        words(() => 'before anything was allocated'),
      );
    }
    let id: number | undefined;
    let state = 'not allocated';
    try {
      const path = remoteUrl ?? staged!.path;
      const template = serializeTemplate(
        { ...attributes, PATH: path, MD5: content.checksums.md5 },
        `image ${image.id} cannot be written to OpenNebula`,
      );
      id = await this.#client.allocateImage(template, datastore.id, signal);
      this.#logger.info('opennebula image allocated', {
        nativeId: String(id),
        name: image.name,
        datastore: datastore.name,
      });
      const ready = await this.#waitReady(id, signal, (s) => (state = String(s)));
      verifySize(ready, content, image);
      await this.#client.chmodImage(id, permissionsFor(image.access), signal);
      return toCloudImage(await this.#client.image(id, signal), this.#read);
    } catch (error) {
      const doing = () => (id === undefined ? 'allocating' : `image ${id} still in state ${state}`);
      const failure = deadline.failure(error, words(doing));
      if (id === undefined) throw failure;
      const allocated = id;
      const remove = (cleanup: AbortSignal) => this.#remove(allocated, cleanup);
      throw await cleanUpAfter(failure, remove, { what: `image ${allocated}`, logger: this.#logger });
    } finally {
      if (staged?.temporary) await unlink(staged.path).catch(() => undefined);
    }
  }

  /** The image's group, when it is not the home group and has use rights (GROUP_U): the one it is shared with. */
  async members(nativeId: string, options: DriverCallOptions = {}): Promise<ShareMember[]> {
    this.#open();
    return this.#membersOf(await this.#client.image(imageIdOf(nativeId), options.signal));
  }

  /**
   * Shares by moving the image to the wanted group (one.image.chown -1 GID) and back to the home
   * group when visor's group is no longer wanted. A group someone else moved the image to is not
   * taken away (`conflict`); an image without group use rights (not `shared`) is not widened here.
   */
  async share(nativeId: string, request: ShareRequest): Promise<ShareResult> {
    this.#open();
    checkSharing('opennebula', this.capabilities, request.wanted);
    const home = this.#options.homeGroup!;
    const bad = request.wanted.filter((g) => !/^\d+$/.test(g) || Number(g) === home);
    if (bad.length > 0) {
      const why = `opennebula: share with group ids other than the home group ${home}, not ${bad.join(', ')}`;
      throw new VisorError('invalidInput', why);
    }
    const id = imageIdOf(nativeId);
    const current = await this.#client.image(id, request.signal);
    checkClaim(nativeId, toCloudImage(current, this.#read).markers, request.claim, 'share');
    const present = this.#membersOf(current).map((m) => m.principal);
    const { add, remove } = shareDelta(present, request);
    const kept = present.filter((g) => !remove.includes(g));
    if (add.length > 0 && kept.length > 0) {
      const why = `opennebula: image ${id} is shared with group ${kept.join(', ')}, which visor did not set`;
      throw new VisorError('conflict', `${why}; an image has one group, so it is left there`);
    }
    if (add.length > 0 && accessOf(current.permissions) !== 'shared') {
      const why = `opennebula: image ${id} gives its group no use rights (not shared)`;
      throw new VisorError('conflict', `${why}; sharing does not widen it`);
    }
    if (add.length > 0) await this.#client.chownImage(id, -1, Number(add[0]), request.signal);
    else if (remove.length > 0) await this.#client.chownImage(id, -1, home, request.signal);
    const members = this.#membersOf(await this.#client.image(id, request.signal));
    return { members, added: add, removed: remove };
  }

  #membersOf(image: { gid: number; permissions: Parameters<typeof accessOf>[0] }): ShareMember[] {
    if (image.gid === this.#options.homeGroup || !image.permissions.GROUP_U) return [];
    return [{ principal: String(image.gid), status: 'granted' }];
  }

  async updateMetadata(nativeId: string, image: Image, markers: Markers, options: ClaimedCallOptions = {}) {
    this.#open();
    const id = imageIdOf(nativeId);
    const current = await this.#client.image(id, options.signal);
    checkClaim(nativeId, toCloudImage(current, this.#read).markers, options.claim, 'update');
    const hidden = current.name.startsWith(this.#read.expiredPrefix);
    // A retired image keeps its EXPIRED_<time>_ prefix: only `reveal` renames it back.
    const name = hidden
      ? current.name.slice(0, current.name.length - originalName(current.name, this.#read.expiredPrefix).length) +
        image.name
      : image.name;
    const problem = nameProblem(name);
    if (problem)
      throw new VisorError('invalidInput', `image ${image.id} cannot be written to OpenNebula: name: ${problem}`);
    const template = serializeTemplate(
      updateAttributes(current, image, markers),
      `image ${image.id} cannot be written to OpenNebula`,
    );
    await this.#client.updateImage(id, template, true, options.signal);
    if (current.name !== name) await this.#client.renameImage(id, name, options.signal);
    if (!hidden && accessOf(current.permissions) !== image.access)
      await this.#client.chmodImage(id, permissionsFor(image.access), options.signal);
    return toCloudImage(await this.#client.image(id, options.signal), this.#read);
  }

  async retire(nativeId: string, mode: RetireMode, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    checkRetireMode('opennebula', this.capabilities, mode, 'is not possible: oned has no hidden-but-usable flag');
    const id = imageIdOf(nativeId);
    const image = await this.#client.image(id, options.signal);
    checkClaim(nativeId, toCloudImage(image, this.#read).markers, options.claim, mode);
    if (mode === 'delete') return this.#delete(image, options.signal);
    await this.#disable(image, options.signal);
  }

  /** Undoes a retirement: enabled again, its name back, the expiry stamp cleared (access follows in updateMetadata). */
  async reveal(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    const id = imageIdOf(nativeId);
    const image = await this.#client.image(id, options.signal);
    checkClaim(nativeId, toCloudImage(image, this.#read).markers, options.claim, 'reveal');
    if (image.state === oneImageStates.DISABLED) await this.#client.enableImage(id, true, options.signal);
    const name = originalName(image.name, this.#read.expiredPrefix);
    if (name !== image.name) await this.#client.renameImage(id, name, options.signal);
    if (image.template[oneAttributes.expired]) {
      const cleared = serializeTemplate({ [oneAttributes.expired]: '' }, 'expiry stamp');
      await this.#client.updateImage(id, cleared, true, options.signal);
    }
  }

  /** one.image.delete and the wait until oned has removed it, whatever the retire policy. */
  async discard(nativeId: string, options: ClaimedCallOptions = {}): Promise<void> {
    this.#open();
    let image: OneImage;
    try {
      image = await this.#client.image(imageIdOf(nativeId), options.signal);
    } catch (error) {
      if (isVisorError(error, 'notFound')) return;
      throw error;
    }
    checkClaim(nativeId, toCloudImage(image, this.#read).markers, options.claim, 'discard');
    await this.#delete(image, options.signal);
  }

  async download(
    nativeId: string,
    options: DriverCallOptions & { range?: ByteRange } = {},
  ): Promise<{ stream: import('node:stream').Readable; size?: number }> {
    this.#open();
    if (this.#options.mode !== 'local') {
      throw new VisorError(
        'unsupported',
        'opennebula: download needs mode "local" (the agent beside oned, ' +
          'reading the datastore); oned has no download call',
      );
    }
    const id = imageIdOf(nativeId);
    const image = await this.#client.image(id, options.signal);
    const { state } = stateOf(image.state, image.runningVms);
    if (state !== 'active' && state !== 'disabled')
      throw new VisorError('conflict', `opennebula: image ${id} is ${state}, its bits cannot be read`);
    if (!isAbsolute(image.source)) {
      throw new VisorError(
        'unsupported',
        `opennebula: image ${id} is stored as "${image.source}", not as a file this agent can read`,
      );
    }
    let size: number;
    try {
      const info = await stat(image.source);
      if (!info.isFile()) throw new Error('not a regular file');
      size = info.size;
    } catch (error) {
      throw new VisorError(
        'unavailable',
        `opennebula: cannot read image ${id} at ${image.source}: ${(error as Error).message}`,
      );
    }
    const base = options.signal ? { signal: options.signal } : {};
    if (!options.range) return { stream: createReadStream(image.source, base), size };
    const { start, end } = checkRange(options.range, size);
    return { stream: createReadStream(image.source, { ...base, start, end }), size: end - start + 1 };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }

  #open(): void {
    if (this.#closed) throw new VisorError('internal', 'opennebula driver used after close()');
  }

  async #datastore(ref: string | number, type: number, signal?: AbortSignal): Promise<OneDatastore> {
    const pool = await this.#client.datastorePool(signal);
    const byId = typeof ref === 'number' || /^\d+$/.test(ref);
    const datastore = pool.find((d) => (byId ? d.id === Number(ref) : d.name === ref));
    if (!datastore)
      throw new VisorError(
        'config',
        `opennebula: no datastore ${byId ? `with id ${ref}` : `named "${ref}"`} is ` +
          `visible to user ${this.#options.username}`,
      );
    if (datastore.type !== type) {
      const names = Object.fromEntries(Object.entries(oneDatastoreTypes).map(([k, v]) => [v, k]));
      throw new VisorError(
        'config',
        `opennebula: datastore ${datastore.name} is a ${names[datastore.type] ?? datastore.type}, ` +
          `these images need a ${names[type]}`,
      );
    }
    if (datastore.state !== 0)
      throw new VisorError('unavailable', `opennebula: datastore ${datastore.name} is disabled`);
    return datastore;
  }

  /** PATH for local mode: the file a file: URL names, or the content copied (and verified) into stagingDir. */
  async #localPath(
    content: ContentSource,
    imageId: string,
    signal?: AbortSignal,
  ): Promise<{ path: string; temporary: boolean }> {
    if (content.url?.startsWith('file:')) return { path: fileURLToPath(content.url), temporary: false };
    const dir = this.#options.stagingDir;
    if (!dir)
      throw new VisorError(
        'config',
        'opennebula: mode "local" needs stagingDir (a folder oned may read, listed in the datastore\'s SAFE_DIRS)',
      );
    await mkdir(dir, { recursive: true, mode: 0o750 });
    const path = join(dir, `visor-${imageId}-${randomBytes(6).toString('hex')}.img`);
    const digest = new DigestStream();
    try {
      // Group-readable: oned's datastore driver runs as oneadmin, which must share the agent's group.
      await pipeline(
        await content.open(),
        digest,
        createWriteStream(path, { flags: 'wx', mode: 0o640 }),
        ...(signal ? [{ signal }] : []),
      );
      verifyDigest(digest.result(), { size: content.size, checksums: content.checksums });
    } catch (error) {
      await unlink(path).catch(() => undefined);
      if (isVisorError(error)) throw error;
      throw new VisorError(
        'unavailable',
        `opennebula: staging the content in ${dir} failed: ${(error as Error).message}`,
      );
    }
    return { path, temporary: true };
  }

  async #waitReady(id: number, signal: AbortSignal, onState: (state: number) => void): Promise<OneImage> {
    const s = oneImageStates;
    return pollUntil({
      read: (readSignal) => this.#client.image(id, readSignal),
      intervalMs: this.#options.pollIntervalMs,
      signal,
      done: (image) => {
        onState(image.state);
        if (image.state === s.READY || image.state === s.USED || image.state === s.USED_PERS) return true;
        if (image.state === s.ERROR) {
          throw new VisorError(
            'unavailable',
            `opennebula: image ${id} failed to import: ${image.template['ERROR'] ?? 'oned gave no reason'}`,
            {
              details: { nativeId: String(id), oneError: image.template['ERROR'] },
            },
          );
        }
        const importing = [s.LOCKED, s.INIT, s.LOCKED_USED, s.LOCKED_USED_PERS] as number[];
        if (!importing.includes(image.state)) {
          throw new VisorError('unavailable', `opennebula: image ${id} went to state ${image.state} while importing`);
        }
        return false;
      },
    });
  }

  /** Deletes an image (never one in use) and waits until oned has removed it. */
  async #delete(image: OneImage, signal?: AbortSignal): Promise<void> {
    const { inUse } = stateOf(image.state, image.runningVms);
    if (inUse) {
      const why = `is in use by ${image.runningVms} VM(s) and cannot be deleted`;
      throw new VisorError('conflict', `opennebula: image ${image.id} (${image.name}) ${why}`, {
        details: { nativeId: String(image.id), state: image.state, runningVms: image.runningVms },
      });
    }
    const deadline = new Deadline(this.#options.deleteWaitMs ?? 15 * 60_000, signal);
    try {
      await this.#remove(image.id, deadline.signal);
    } catch (error) {
      throw deadline.failure(error, {
        timeout: () => `opennebula: image ${image.id} was still there ${deadline.ms / 1000} s after it was deleted`,
        aborted: () => `opennebula: waiting for image ${image.id} to be deleted was aborted`,
      });
    } finally {
      deadline.dispose();
    }
  }

  /** one.image.delete, then polls until oned no longer knows the image (deleting is asynchronous there). */
  async #remove(id: number, signal: AbortSignal): Promise<void> {
    await this.#client.deleteImage(id, signal);
    let gone = false;
    await pollUntil({
      read: (readSignal) =>
        this.#client.image(id, readSignal).catch((error: unknown) => {
          if (!isVisorError(error, 'notFound')) throw error;
          gone = true;
          return undefined;
        }),
      intervalMs: this.#options.pollIntervalMs,
      signal,
      done: (image) => {
        if (gone || !image) return true;
        if (image.state === oneImageStates.ERROR) {
          throw new VisorError(
            'unavailable',
            `opennebula: deleting image ${id} failed: ${image.template['ERROR'] ?? 'oned gave no reason'}`,
          );
        }
        return false;
      },
    });
  }

  /** cloudkeeper-one's expiry: chmod, disable when oned allows it, rename EXPIRED_<time>_<name>, stamp the time. */
  async #disable(image: OneImage, signal?: AbortSignal): Promise<void> {
    const s = oneImageStates;
    const now = this.#now();
    await this.#client.chmodImage(image.id, this.#retirePermissions, signal);
    if (image.state === s.READY || image.state === s.ERROR) {
      await this.#client.enableImage(image.id, false, signal);
    } else if (image.state !== s.DISABLED) {
      // oned refuses to disable an image VMs use (ImageManager::enable_image); it is still renamed and hidden.
      this.#logger.warn('opennebula image in use: renamed and hidden, but not disabled', {
        nativeId: String(image.id),
        state: image.state,
        runningVms: image.runningVms,
      });
    }
    if (!image.name.startsWith(this.#read.expiredPrefix))
      await this.#client.renameImage(image.id, expiredName(image.name, now, this.#read.expiredPrefix), signal);
    if (!image.template[oneAttributes.expired]) {
      await this.#client.updateImage(
        image.id,
        serializeTemplate({ [oneAttributes.expired]: now.toISOString() }, 'expiry stamp'),
        true,
        signal,
      );
    }
  }
}

/** oned ids are non-negative integers; anything else cannot name an image there. */
function imageIdOf(nativeId: string): number {
  if (!/^\d{1,9}$/.test(nativeId))
    throw new VisorError('notFound', `opennebula: no image ${nativeId} (ids are numbers)`);
  return Number(nativeId);
}

function remoteUrlOf(content: ContentSource): string {
  if (content.url === undefined || !/^https?:\/\//.test(content.url)) {
    throw new VisorError(
      'invalidInput',
      'opennebula: mode "remote" needs content with an http(s) URL that oned can fetch (ContentSource.url)',
    );
  }
  return content.url;
}

/**
 * oned's SIZE is the content in whole MiB, rounded up (fs_size of OpenNebula's datastore library libfs); for qcow2 it
 * is the virtual size, checked when the image says it.
 */
function verifySize(image: OneImage, content: ContentSource, generic: Image): void {
  const expected =
    content.diskFormat === 'qcow2'
      ? generic.virtualSize !== undefined
        ? mbOf(generic.virtualSize)
        : undefined
      : mbOf(content.size);
  if (expected === undefined || image.sizeMb === expected) return;
  throw new VisorError(
    'integrity',
    `opennebula: image ${image.id} holds ${image.sizeMb} MB, the content is ${expected} MB (${content.size} bytes)`,
    {
      details: { nativeId: String(image.id), sizeMb: image.sizeMb, expectedMb: expected },
    },
  );
}
