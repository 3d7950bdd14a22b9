import {
  defaultSoftDeleteMs,
  deprecate,
  dueChange,
  purgeDue,
  softDelete,
  undeprecate,
  type DeprecateRequest,
} from '../../core/image/deprecation.js';
import type { Readable } from 'node:stream';
import type { Catalog, ImageQuery, Page } from '../../core/catalog/port.js';
import { isVisorError, VisorError } from '../../core/errors.js';
import { newImage, systemClock, type Clock } from '../../core/image/image.js';
import { nextStatus } from '../../core/image/lifecycle.js';
import { inspectImage, type InspectionReport } from '../../core/formats/index.js';
import { checksumAlgorithms, containerFormats, deferredChecksums, diskFormats } from '../../core/image/model.js';
import type {
  Checksums,
  ContainerFormat,
  DeferredChecksum,
  DiskFormat,
  Image,
  ImageChanges,
  ImageDraft,
} from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import { putInspected } from '../../core/store/inspected-put.js';
import type { ByteRange, GetResult, PutResult, Store } from '../../core/store/port.js';
import { storeReader } from '../../core/store/store-reader.js';
import { callerId, canModify, canSee, type Caller } from './access.js';
import { ChecksumCompleter } from './checksum-completer.js';
import { UploadLimits, type UploadLimitsOptions } from './upload-limits.js';
import { UserDirectory } from './user-directory.js';

export interface ImageServiceOptions {
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  defaultStore: string;
  logger: Logger;
  clock?: Clock;
  /** How often a running upload tells the catalog it is alive. */
  heartbeatMs?: number;
  /** An upload silent for this long is considered dead (its server crashed) and recovered. */
  staleUploadMs?: number;
  /** The size cap and storage quotas of uploads (none when absent). */
  limits?: UploadLimitsOptions;
  /** How long a deleted image is kept, bits included, restorable (default 7 days; 0: deleted at once). */
  softDeleteMs?: number;
}

export interface UploadOptions {
  /** Declared length (Content-Length), checked against what arrives. */
  size?: number;
  /** Checksums the client declared; a mismatch fails the upload and keeps nothing. */
  expected?: Checksums;
  signal?: AbortSignal;
  /**
   * Format changes that come with the new file (a PUT of metadata and bytes): the bytes are
   * inspected against them, and they apply only if the bytes are accepted (`null` clears: the
   * format is then detected).
   */
  formats?: { diskFormat?: DiskFormat | null; containerFormat?: ContainerFormat | null };
  /**
   * Checks the stored bytes before the image becomes available (a streamed upload's signed
   * digest arrives after its body); throwing fails the upload and keeps nothing.
   */
  verify?: (stored: PutResult) => void | Promise<void>;
  /** The store to write to (a configured store's name or kind; default: the default store). */
  store?: string;
}

/** Error kinds of an inspection's refusal. */
const inspectionKinds: ReadonlySet<string> = new Set(['unsafe', 'invalidInput', 'unsupported']);

/** What an image claims its content is, as the inspector takes it. */
function declaredFormats(image: Pick<Image, 'diskFormat' | 'containerFormat'>): {
  declared?: DiskFormat;
  container?: ContainerFormat;
} {
  return {
    ...(image.diskFormat ? { declared: image.diskFormat } : {}),
    ...(image.containerFormat ? { container: image.containerFormat } : {}),
  };
}

/** An image's formats after `changes` (checked: they come from a client); null clears one. */
function withFormats(image: Image, changes: UploadOptions['formats']): Pick<Image, 'diskFormat' | 'containerFormat'> {
  const out: Pick<Image, 'diskFormat' | 'containerFormat'> = {
    ...(image.diskFormat ? { diskFormat: image.diskFormat } : {}),
    ...(image.containerFormat ? { containerFormat: image.containerFormat } : {}),
  };
  for (const [key, allowed] of [
    ['diskFormat', diskFormats],
    ['containerFormat', containerFormats],
  ] as const) {
    const value = changes?.[key];
    if (value === undefined) continue;
    if (value === null) delete out[key];
    else if ((allowed as readonly string[]).includes(value)) (out as Record<string, string>)[key] = value;
    else {
      const got = String(value).slice(0, 40);
      throw new VisorError('invalidInput', `${key} must be one of ${allowed.join(', ')}, got "${got}"`);
    }
  }
  return out;
}

/** The formats an inspection found, for the fields the image left unset; and its virtual size. */
function contentFormats(
  image: Pick<Image, 'diskFormat' | 'containerFormat'>,
  inspection: InspectionReport,
): Partial<Pick<Image, 'diskFormat' | 'containerFormat' | 'virtualSize'>> {
  return {
    ...(image.diskFormat ? {} : { diskFormat: inspection.format }),
    ...(image.containerFormat ? {} : { containerFormat: inspection.containerFormat }),
    ...(inspection.virtualSize !== undefined ? { virtualSize: inspection.virtualSize } : {}),
  };
}

/** The deferred digests a put left out (null: none, which clears what an earlier upload left). */
function pendingOf(checksums: Checksums): DeferredChecksum[] | null {
  const pending = deferredChecksums.filter((algorithm) => checksums[algorithm] === undefined);
  return pending.length > 0 ? pending : null;
}

/** Fields a client may set; the rest are the service's (status, size, checksums, location, ...). */
const clientFields = [
  'name',
  'architecture',
  'diskFormat',
  'containerFormat',
  'type',
  'kernelId',
  'ramdiskId',
  'access',
  'members',
  'owner',
  'minDisk',
  'minRam',
  'os',
  'tags',
  'properties',
  'family',
  'excludeFromLatest',
  'protected',
] as const;

/**
 * The image service: VISOR's operations (register, reference, upload, download, update,
 * delete) on the catalog and the stores, with visibility and ownership rules. The HTTP API
 * is a thin layer over it.
 */
export class ImageService {
  readonly #o: Required<Omit<ImageServiceOptions, 'clock' | 'limits'>> & { clock: Clock };
  readonly #softDeleteMs: number;
  readonly #limits: UploadLimits;
  readonly #users: UserDirectory;
  #checksums: ChecksumCompleter | undefined;

  constructor(options: ImageServiceOptions) {
    const defaults = { heartbeatMs: 60_000, staleUploadMs: 10 * 60_000, clock: systemClock };
    this.#o = { ...defaults, softDeleteMs: defaultSoftDeleteMs, ...options };
    this.#softDeleteMs = this.#o.softDeleteMs;
    this.#users = new UserDirectory(options.catalog.users);
    if (!options.stores.has(options.defaultStore))
      throw new VisorError('config', `default store "${options.defaultStore}" is not configured`);
    this.#limits = new UploadLimits(options.limits ?? {}, options.catalog, options.stores);
  }

  /**
   * Starts the work that outlives requests (a server's, not a one-shot command's): from now on
   * an upload computes only the sha256 on its request path, and its md5 and sha512 are computed
   * afterwards from the stored bytes (`checksumsPending` meanwhile). The digests earlier uploads
   * left pending (this server's before it stopped, or another's that stopped) are queued again.
   */
  async startBackgroundWork(): Promise<void> {
    if (this.#checksums) return;
    const { catalog, stores, logger, clock, heartbeatMs, staleUploadMs } = this.#o;
    const completer = new ChecksumCompleter({ catalog, stores, logger, clock, heartbeatMs, staleMs: staleUploadMs });
    await completer.resume();
    completer.start();
    this.#checksums = completer;
  }

  /** Resolves once no digests are being computed in the background (tests, benchmarks). */
  async checksumsIdle(): Promise<void> {
    await this.#checksums?.idle();
  }

  /** Stops the background work; what it had not finished stays pending in the catalog. */
  async close(): Promise<void> {
    await this.#checksums?.close();
  }

  get catalog(): Catalog {
    return this.#o.catalog;
  }

  async list(caller: Caller, query: ImageQuery): Promise<Page<Image>> {
    const resolved = await this.#userFilters(query);
    // Deleted images (restorable until purged) are listed only when asked for by status.
    const hideDeleted = resolved.filters?.['status'] === undefined;
    const withTrash = { ...resolved, hideDeleted };
    return this.#o.catalog.images.list(caller.admin ? withTrash : { ...withTrash, visibleTo: callerId(caller) });
  }

  /** Names for the owner and member ids of these images, to show people names rather than ids. */
  async userNames(images: readonly Image[]): Promise<Map<string, string>> {
    return this.#users.names(images);
  }

  /** An image the caller may see; one they may not see does not exist for them. */
  async get(caller: Caller, id: string, options: { deleted?: boolean } = {}): Promise<Image> {
    const image = await this.#o.catalog.images.find(id);
    const gone = image?.status === 'deleted' && options.deleted !== true;
    if (!image || gone || !canSee(caller, image)) {
      throw new VisorError('notFound', `no image with id ${id}`, { details: { id } });
    }
    return image;
  }

  /** Registers metadata only (status locked). */
  async register(caller: Caller, draft: Record<string, unknown>): Promise<Image> {
    const image = newImage(await this.#draft(caller, draft), this.#o.clock);
    return this.#o.catalog.images.create(image);
  }

  /**
   * Registers an image whose bits stay at an HTTP(S) location (VISOR's http store). The content
   * is inspected first, by ranged reads of its headers: an unsafe image is never registered.
   */
  async reference(caller: Caller, draft: Record<string, unknown>, uri: string, storeName?: string): Promise<Image> {
    const [name, store] = this.#storeForUri(uri);
    if (storeName !== undefined && storeName !== name && storeName !== store.kind) {
      throw new VisorError('invalidInput', `a location is referenced through the http store, not store=${storeName}`);
    }
    const fields = await this.#draft(caller, draft);
    const info = await store.head(uri);
    const image = newImage(fields, this.#o.clock);
    const reader = storeReader(store, uri, info.size);
    const inspection = await this.#refusing(image, () => inspectImage(reader, declaredFormats(image)));
    return this.#o.catalog.images.create({
      ...image,
      ...contentFormats(image, inspection),
      status: nextStatus(image.status, 'reference'),
      location: { store: name, uri },
      size: info.size,
      checksums: info.checksums,
      uploadedAt: image.createdAt,
    });
  }

  async update(
    caller: Caller,
    id: string,
    changes: Record<string, unknown>,
    expectedRevision?: number,
  ): Promise<Image> {
    const allowed = await this.#changes(caller, changes);
    return this.#latest(caller, id, expectedRevision, async (image) => {
      const checked = await this.#checkedFormats(image, allowed);
      return this.#o.catalog.images.update(id, expectedRevision ?? image.revision, checked);
    });
  }

  /**
   * Runs `change` on the image as it is now; again on a newer revision when the service's own
   * background work (digests recorded after an upload) changed it in between. A caller who named
   * the revision they expect gets the conflict as it is.
   */
  async #latest<T>(
    caller: Caller,
    id: string,
    expected: number | undefined,
    change: (image: Image) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const image = await this.#modifiable(caller, id);
      try {
        return await change(image);
      } catch (error) {
        if (expected !== undefined || attempt >= 4 || !isVisorError(error, 'conflict')) throw error;
        const now = await this.#o.catalog.images.find(id);
        if (now?.revision === image.revision) throw error;
      }
    }
  }

  /**
   * Streams `body` into the default store and makes the image available. The catalog says
   * `uploading` meanwhile; a failed or cut-off upload keeps no bytes and leaves the image
   * `error` (or, for a re-upload, as it was).
   */
  async upload(caller: Caller, id: string, body: Readable, options: UploadOptions = {}): Promise<Image> {
    const before = await this.#modifiable(caller, id);
    if (before.status === 'uploading' && !this.#isStale(before)) {
      throw new VisorError('conflict', `image ${id} is being uploaded already`, { details: { id } });
    }
    const declared = withFormats(before, options.formats);
    // Over the size cap or the owner's quota: refused before a byte is read or anything changes.
    const owner = before.owner ?? callerId(caller);
    const names = before.owner === undefined ? undefined : await this.#users.names([before]);
    const ownerName = names ? (names.get(owner) ?? owner) : caller.name;
    const admission = await this.#limits.admit({ id: owner, name: ownerName }, id, options.size);
    // A stale upload's writer is gone: it failed, and this one begins anew.
    const hasBits = before.location !== undefined;
    const from = before.status === 'uploading' ? nextStatus(before.status, 'fail', { hasBits }) : before.status;
    await this.#o.catalog.images.update(id, before.revision, { status: nextStatus(from, 'begin') });
    const failed = { status: nextStatus('uploading', 'fail', { hasBits }) };
    // Keeps updatedAt fresh so that other servers do not mistake a long upload for a dead one.
    const heartbeat = setInterval(() => void this.#settle(id, {}).catch(() => undefined), this.#o.heartbeatMs);
    heartbeat.unref();
    const storeName = options.store === undefined ? this.#o.defaultStore : this.uploadStore(options.store, true);
    const store = this.#o.stores.get(storeName)!;
    let put: Awaited<ReturnType<typeof putInspected>>;
    try {
      // Inspected as it streams in; the record stays `uploading` (not downloadable) until the
      // verdict, and a refused image leaves no bytes behind.
      const { formats: _, verify: __, store: ___, ...transfer } = options;
      // The sha256 only, when digests are deferred: it is what the request needs (the content's
      // identity, checked against the client's signed digest before the image is available).
      const digests = this.#checksums ? (['sha256'] as const) : checksumAlgorithms;
      const inspected = { ...transfer, digests, ...declaredFormats(declared), through: [admission.limit] };
      put = await this.#refusing(before, () => putInspected(store, id, body, inspected));
    } catch (error) {
      clearInterval(heartbeat);
      admission.done();
      await this.#settle(id, failed);
      throw error;
    }
    clearInterval(heartbeat);
    try {
      await options.verify?.(put);
    } catch (error) {
      admission.done();
      await store.delete(put.uri).catch(() => undefined);
      await this.#settle(id, failed);
      throw error;
    }
    const changes: ImageChanges = {
      ...(declared.diskFormat ? { diskFormat: declared.diskFormat } : {}),
      ...(declared.containerFormat ? { containerFormat: declared.containerFormat } : {}),
      ...contentFormats(declared, put.inspection),
      status: nextStatus('uploading', 'store'),
      location: { store: storeName, uri: put.uri },
      size: put.size,
      checksums: put.checksums,
      checksumsPending: pendingOf(put.checksums),
      uploadedAt: this.#o.clock.now().toISOString(),
    };
    let done: Image;
    try {
      done = await this.#settle(id, changes);
    } catch (error) {
      // The record went away (deleted meanwhile): the bytes must not outlive it.
      await store.delete(put.uri).catch(() => undefined);
      throw error;
    } finally {
      admission.done();
    }
    if (before.location && before.location.uri !== put.uri) await this.#deleteBits(before);
    this.#checksums?.enqueue(done);
    return done;
  }

  async download(caller: Caller, id: string, range?: ByteRange): Promise<{ image: Image } & GetResult> {
    const image = await this.get(caller, id);
    if (image.status !== 'available' || !image.location) {
      throw new VisorError('conflict', `image ${id} has no file to download (status ${image.status})`, {
        details: { id, status: image.status },
      });
    }
    const result = await this.#storeOf(image).get(image.location.uri, range ? { range } : {});
    return { image, ...result };
  }

  /**
   * Deletes an image: softly when a keeping period is configured (status `deleted`, bits kept,
   * `restore` brings it back until `purgeAfter`), else the metadata and the bits at once (never
   * the bits of a mere HTTP reference). A protected image is refused.
   */
  async delete(caller: Caller, id: string): Promise<Image> {
    // Retried on a newer revision: the checksum completer may record digests meanwhile.
    return this.#latest(caller, id, undefined, async (image) => {
      if (image.status === 'uploading' && !this.#isStale(image)) {
        throw new VisorError('conflict', `image ${id} is being uploaded; try again when it is done`);
      }
      if (image.protected) {
        const why = `image ${id} is protected; unprotect it (protected=false) to delete it`;
        throw new VisorError('conflict', why, { details: { id } });
      }
      if (this.#softDeleteMs > 0) {
        const hasBits = image.location !== undefined;
        const from = image.status === 'uploading' ? nextStatus(image.status, 'fail', { hasBits }) : image.status;
        const changes = { ...softDelete(this.#o.clock.now(), this.#softDeleteMs), status: nextStatus(from, 'delete') };
        return this.#o.catalog.images.update(id, image.revision, changes);
      }
      return this.#purge(image);
    });
  }

  /** Removes a deleted image for good, before its keeping period is over. */
  async purge(caller: Caller, id: string): Promise<Image> {
    const image = await this.#deleted(caller, id, 'purge');
    return this.#purge(image);
  }

  /** Brings a deleted image back, with the bits it kept (checked to be still there). */
  async restore(caller: Caller, id: string): Promise<Image> {
    const image = await this.#deleted(caller, id, 'restore');
    const hasBits = image.location !== undefined;
    if (image.location) {
      const info = await this.#storeOf(image)
        .head(image.location.uri)
        .catch((error: unknown) => {
          if (isVisorError(error, 'notFound')) return undefined;
          throw error;
        });
      if (!info || (image.size !== undefined && info.size !== image.size)) {
        const why = info ? `its store holds ${info.size} bytes, not ${image.size}` : 'its bits are gone from the store';
        throw new VisorError('conflict', `image ${id} cannot be restored: ${why}`, { details: { id } });
      }
    }
    const status = nextStatus(image.status, 'restore', { hasBits });
    return this.#o.catalog.images.update(id, image.revision, { status, deletedAt: null, purgeAfter: null });
  }

  /** Deprecates an image (again: the schedule is replaced); the replacement must be a live image. */
  async deprecate(caller: Caller, id: string, request: DeprecateRequest): Promise<Image> {
    const image = await this.#modifiable(caller, id);
    // Checked first, so that a bad request says what is wrong with it rather than with the replacement.
    const changes = deprecate(image, request, this.#o.clock.now());
    if (request.replacement !== undefined) {
      const replacement = await this.get(caller, request.replacement).catch((error: unknown) => {
        const details = { replacement: request.replacement };
        if (isVisorError(error, 'notFound')) {
          throw new VisorError('invalidInput', `replacement ${request.replacement} is not an image`, { details });
        }
        throw error;
      });
      if (replacement.deprecation) {
        const state = replacement.deprecation.state;
        const details = { replacement: replacement.id };
        throw new VisorError('invalidInput', `replacement ${replacement.id} is ${state} itself`, { details });
      }
    }
    return this.#o.catalog.images.update(id, image.revision, changes);
  }

  async undeprecate(caller: Caller, id: string): Promise<Image> {
    const image = await this.#modifiable(caller, id);
    return this.#o.catalog.images.update(id, image.revision, undeprecate(image));
  }

  /**
   * Applies what the deprecation schedules say is due (obsolete, soft deletion; never deletes a
   * protected image) and purges deleted images whose keeping period is over. Run periodically by
   * `visor serve` and before each agent run; safe to run from several processes at once.
   */
  async sweepLifecycle(): Promise<{ changed: number; purged: number }> {
    const now = this.#o.clock.now();
    let changed = 0;
    let purged = 0;
    for (const state of ['deprecated', 'obsolete'] as const) {
      for await (const image of this.#all({ 'deprecation.state': state })) {
        const due = dueChange(image, now, this.#softDeleteMs);
        if (!due) continue;
        // Someone else changed it meanwhile: the next sweep looks again.
        const done = await this.#o.catalog.images.update(image.id, image.revision, due).then(
          () => true,
          () => false,
        );
        if (done) changed++;
      }
    }
    for await (const image of this.#all({ status: 'deleted' })) {
      // A deleted record without a purge time is a hard delete cut off (or still under way): left
      // to its deleter for a while, then finished here.
      if (!purgeDue(image, now) || (image.purgeAfter === undefined && !this.#isStale(image))) continue;
      const done = await this.#purge(image).then(
        () => true,
        (error: unknown) => {
          this.#o.logger.warn('could not purge a deleted image', { id: image.id, error });
          return false;
        },
      );
      if (done) purged++;
    }
    if (changed + purged > 0) this.#o.logger.info('image life cycle applied', { changed, purged });
    return { changed, purged };
  }

  async *#all(filters: Record<string, string>): AsyncGenerator<Image> {
    let marker: string | undefined;
    do {
      const page = await this.#o.catalog.images.list({ filters, limit: 500, ...(marker ? { marker } : {}) });
      yield* page.items;
      marker = page.nextMarker;
    } while (marker);
  }

  /** A deleted image the caller may restore or purge. */
  async #deleted(caller: Caller, id: string, verb: string): Promise<Image> {
    const image = await this.get(caller, id, { deleted: true });
    if (!canModify(caller, image)) {
      const owner = image.owner ?? 'nobody';
      throw new VisorError('forbidden', `image ${id} belongs to ${owner}; only its owner or an admin may ${verb} it`);
    }
    if (image.status !== 'deleted') {
      throw new VisorError('conflict', `image ${id} is not deleted (status ${image.status})`, { details: { id } });
    }
    return image;
  }

  async #purge(image: Image): Promise<Image> {
    const id = image.id;
    // Mark first, so that a crash between the two steps leaves a visible `deleted` record, not a dangling location.
    const marked =
      image.status === 'deleted'
        ? image
        : await this.#o.catalog.images.update(id, image.revision, { status: nextStatus(image.status, 'delete') });
    await this.#deleteBits(image);
    await this.#o.catalog.images.delete(id, marked.revision);
    return marked;
  }

  /** Recovers uploads whose server died: back to available (re-uploads) or error. */
  async recoverStaleUploads(): Promise<number> {
    let recovered = 0;
    let marker: string | undefined;
    do {
      const page = await this.#o.catalog.images.list({
        filters: { status: 'uploading' },
        limit: 500,
        ...(marker ? { marker } : {}),
      });
      for (const image of page.items) {
        if (!this.#isStale(image)) continue;
        await this.#o.catalog.images
          .update(image.id, image.revision, { status: nextStatus(image.status, 'fail', { hasBits: !!image.location }) })
          .then(() => recovered++)
          .catch(() => undefined);
      }
      marker = page.nextMarker;
    } while (marker);
    if (recovered > 0) this.#o.logger.warn('recovered interrupted uploads', { count: recovered });
    return recovered;
  }

  /** Runs an inspection; a refusal is logged (once, as the refusal it is) and thrown as it is. */
  async #refusing<T>(image: Image, inspect: () => Promise<T>): Promise<T> {
    try {
      return await inspect();
    } catch (error) {
      if (isVisorError(error) && inspectionKinds.has(error.kind)) {
        const { id, owner } = image;
        this.#o.logger.warn('image refused', { id, owner, kind: error.kind, reason: error.message });
      }
      throw error;
    }
  }

  /**
   * A format change of an image that has content must describe that content: checked by
   * inspecting the stored bytes with the new declaration (a format cleared is detected anew).
   */
  async #checkedFormats(image: Image, changes: ImageChanges): Promise<ImageChanges> {
    if (changes.diskFormat === undefined && changes.containerFormat === undefined) return changes;
    if (image.status === 'uploading') {
      throw new VisorError('conflict', `image ${image.id} is being uploaded; change its format when that is done`);
    }
    if (!image.location || image.size === undefined) return changes;
    const next = { ...image, ...changes } as Image;
    for (const key of ['diskFormat', 'containerFormat'] as const) if (changes[key] === null) delete next[key];
    const store = this.#storeOf(image);
    const reader = storeReader(store, image.location.uri, image.size);
    const inspection = await this.#refusing(image, () => inspectImage(reader, declaredFormats(next)));
    return { ...changes, ...contentFormats(next, inspection) };
  }

  #isStale(image: Image): boolean {
    return this.#o.clock.now().getTime() - Date.parse(image.updatedAt) > this.#o.staleUploadMs;
  }

  /** Applies system changes on top of whatever revision is current (metadata edits during an upload are fine). */
  async #settle(id: string, changes: ImageChanges): Promise<Image> {
    for (let attempt = 0; ; attempt++) {
      const latest = await this.#o.catalog.images.get(id);
      try {
        return await this.#o.catalog.images.update(id, latest.revision, changes);
      } catch (error) {
        if (!isVisorError(error, 'conflict') || attempt >= 5) throw error;
      }
    }
  }

  async #deleteBits(image: Image): Promise<void> {
    if (!image.location) return;
    const store = this.#o.stores.get(image.location.store);
    if (!store?.capabilities.writable) return;
    // A failure is the caller's to report (the API logs it once, with the request).
    await store.delete(image.location.uri);
  }

  async #modifiable(caller: Caller, id: string): Promise<Image> {
    const image = await this.get(caller, id);
    if (!canModify(caller, image))
      throw new VisorError(
        'forbidden',
        `image ${id} belongs to ${image.owner ?? 'nobody'}; only its owner or an admin may change it`,
      );
    return image;
  }

  async #draft(caller: Caller, fields: Record<string, unknown>): Promise<ImageDraft> {
    const draft = { ...(await this.#changes(caller, fields)) } as Record<string, unknown>;
    for (const [key, value] of Object.entries(draft)) if (value === null) delete draft[key];
    // A draft without `access` becomes a private image (newImage).
    if (!caller.admin || draft['owner'] === undefined) draft['owner'] = callerId(caller);
    return draft as unknown as ImageDraft;
  }

  /** Keeps client-settable fields; anything else is refused, naming the field. Owner and members become user ids. */
  async #changes(caller: Caller, fields: Record<string, unknown>): Promise<ImageChanges> {
    const refused = Object.keys(fields).filter((k) => !(clientFields as readonly string[]).includes(k));
    if (refused.length > 0) {
      throw new VisorError(
        'invalidInput',
        `${refused.join(', ')} ${refused.length === 1 ? 'is' : 'are'} set by visor, not by clients`,
        { details: { fields: refused } },
      );
    }
    if ('owner' in fields && !caller.admin)
      throw new VisorError('forbidden', 'only an admin may set the owner of an image');
    const changes = { ...fields };
    if (typeof fields['owner'] === 'string') changes['owner'] = await this.#users.require(fields['owner'], 'owner');
    if (Array.isArray(fields['members'])) {
      changes['members'] = await Promise.all(fields['members'].map((m: unknown) => this.#users.require(m, 'members')));
    }
    return changes as ImageChanges;
  }

  /** `owner=` and `member=` filters name users; the catalog keeps their ids. */
  async #userFilters(query: ImageQuery): Promise<ImageQuery> {
    const filters = query.filters;
    if (!filters || (filters['owner'] === undefined && filters['members'] === undefined)) return query;
    const resolved = { ...filters };
    for (const key of ['owner', 'members'] as const) {
      const value = filters[key];
      // An owner that is no user (the agent's id on imported images) is matched as it is.
      if (typeof value === 'string') resolved[key] = (await this.#users.idOf(value)) ?? value;
    }
    return { ...query, filters: resolved };
  }

  /**
   * The configured store an upload asks for by name, or by kind when exactly one store has it
   * (VISOR's `store=file`, `store=s3`). Refused before anything is registered.
   */
  uploadStore(wanted: string, withFile: boolean): string {
    let name: string | undefined = this.#o.stores.has(wanted) ? wanted : undefined;
    if (!name) {
      const ofKind = [...this.#o.stores].filter(([, store]) => store.kind === wanted).map(([n]) => n);
      if (ofKind.length > 1) {
        throw new VisorError(
          'invalidInput',
          `store=${wanted}: several stores are of that kind (${ofKind.join(', ')}): name one`,
        );
      }
      name = ofKind[0];
    }
    if (!name) {
      const known = [...this.#o.stores.keys()].join(', ');
      throw new VisorError('invalidInput', `store=${wanted}: no such store (configured: ${known})`);
    }
    if (this.#o.stores.get(name)!.kind === 'http') {
      throw new VisorError(
        'invalidInput',
        `store=${wanted} references images by location=URL; it does not take uploads`,
      );
    }
    if (!withFile)
      throw new VisorError('invalidInput', `store=${wanted} is where an uploaded file goes: send the file with it`);
    return name;
  }

  #storeOf(image: Image): Store {
    const store = image.location ? this.#o.stores.get(image.location.store) : undefined;
    if (!store)
      throw new VisorError(
        'unavailable',
        `image ${image.id} is in store "${image.location?.store}", which is not configured here`,
      );
    return store;
  }

  #storeForUri(uri: string): [string, Store] {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1]?.toLowerCase();
    if (scheme !== 'http' && scheme !== 'https')
      throw new VisorError('invalidInput', `a location must be an http(s) URL, got "${uri.slice(0, 100)}"`);
    for (const [name, store] of this.#o.stores) if (store.kind === 'http') return [name, store];
    throw new VisorError('unsupported', 'no http store is configured to reference HTTP locations');
  }
}
