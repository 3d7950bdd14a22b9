import type { Catalog } from '../../core/catalog/port.js';
import { formatBytes } from '../../core/config/byte-size.js';
import { VisorError } from '../../core/errors.js';
import type { Store } from '../../core/store/port.js';
import { ByteLimit } from '../../core/transfer/byte-limit.js';

export interface UploadLimitsOptions {
  /** Largest image an upload may store (Glance's image_size_cap). */
  maxImageSize?: number | undefined;
  /** Bytes an owner's stored images may take: `users[name]` (or by id), else `perUser`, else unlimited. */
  quota?: { perUser?: number | undefined; users?: Readonly<Record<string, number>> } | undefined;
}

/** An image's owner: the id images keep, and the name people (and the quota config) use. */
export interface Owner {
  id: string;
  /** The user's name; the id itself for an owner that is no user (e.g. an agent's id). */
  name: string;
}

/** One admitted upload: its bytes go through `limit`; `done` when it is over, whatever happened. */
export interface Admission {
  limit: ByteLimit;
  done(): void;
}

/**
 * The size cap and the per-owner storage quota of uploads. A declared length over either is
 * refused before a byte is read; a body of unknown length is cut off at the limit (the store
 * keeps nothing). Bytes of uploads in flight count against their owner's quota as they arrive,
 * so concurrent uploads to one server cannot overshoot it together.
 */
export class UploadLimits {
  readonly #options: UploadLimitsOptions;
  readonly #catalog: Catalog;
  readonly #stores: ReadonlyMap<string, Store>;
  readonly #inFlight = new Map<string, number>();

  constructor(options: UploadLimitsOptions, catalog: Catalog, stores: ReadonlyMap<string, Store>) {
    this.#options = options;
    this.#catalog = catalog;
    this.#stores = stores;
  }

  /**
   * Admits an upload of `imageId` (owned by `owner`, replacing whatever bytes it has) of
   * `declared` bytes when the length is known; throws `tooLarge` when that is over a limit.
   */
  async admit({ id: owner, name }: Owner, imageId: string, declared: number | undefined): Promise<Admission> {
    const cap = this.#options.maxImageSize;
    const users = this.#options.quota?.users ?? {};
    const own = Object.hasOwn(users, name) ? users[name] : Object.hasOwn(users, owner) ? users[owner] : undefined;
    const quota = own ?? this.#options.quota?.perUser;
    const { total: used, deleted } = quota === undefined ? { total: 0, deleted: 0 } : await this.#usage(owner, imageId);
    const overCap = (size: number) => cap !== undefined && size > cap;
    const overQuota = (more: number) => quota !== undefined && used + (this.#inFlight.get(owner) ?? 0) + more > quota;
    if (declared !== undefined && overCap(declared)) throw capError(declared, cap!);
    if (declared !== undefined && overQuota(declared)) throw quotaError(name, quota!, used, deleted, declared);
    let counted = 0;
    const limit = new ByteLimit((total, chunk) => {
      if (overCap(total)) return capError(undefined, cap!);
      if (quota === undefined) return undefined;
      if (overQuota(chunk)) return quotaError(name, quota, used, deleted, undefined);
      counted += chunk;
      this.#inFlight.set(owner, (this.#inFlight.get(owner) ?? 0) + chunk);
      return undefined;
    });
    let finished = false;
    return {
      limit,
      done: () => {
        if (finished || counted === 0) return;
        finished = true;
        const left = (this.#inFlight.get(owner) ?? 0) - counted;
        if (left > 0) this.#inFlight.set(owner, left);
        else this.#inFlight.delete(owner);
      },
    };
  }

  /**
   * Bytes the owner's images take in writable stores, but for `except` (whose bytes are being
   * replaced); `deleted`: the part of them that deleted images keep until they are purged.
   */
  async #usage(owner: string, except: string): Promise<{ total: number; deleted: number }> {
    let total = 0;
    let deleted = 0;
    let marker: string | undefined;
    do {
      const page = await this.#catalog.images.list({ filters: { owner }, limit: 1000, ...(marker ? { marker } : {}) });
      for (const image of page.items) {
        if (image.id === except || !image.location || image.size === undefined) continue;
        if (this.#stores.get(image.location.store)?.capabilities.writable === false) continue;
        total += image.size;
        if (image.status === 'deleted') deleted += image.size;
      }
      marker = page.nextMarker;
    } while (marker);
    return { total, deleted };
  }
}

function capError(size: number | undefined, cap: number): VisorError {
  const what = size === undefined ? `the image is larger than` : `the image (${formatBytes(size)}) is larger than`;
  return new VisorError('tooLarge', `${what} the ${formatBytes(cap)} size limit of this server (server.maxImageSize)`, {
    details: { limit: cap },
  });
}

function quotaError(owner: string, quota: number, used: number, deleted: number, size: number | undefined): VisorError {
  const adding = size === undefined ? 'this upload' : `this upload of ${formatBytes(size)}`;
  // Deleted images keep their bits (restorable) until purged: say so, or the quota looks wrong.
  const kept =
    deleted > 0
      ? `, ${formatBytes(deleted)} of it by deleted images kept for restoring (visor delete --purge frees it)`
      : '';
  return new VisorError(
    'tooLarge',
    `${adding} would take ${owner} over the storage quota of ${formatBytes(quota)} ` +
      `(${formatBytes(used)} in use${kept}; server.quota)`,
    {
      details: { owner, quota, used, deleted },
    },
  );
}
