import { createHash, randomUUID } from 'node:crypto';

/**
 * The tiny cloud: an image service that lives in the process, so that this example needs no
 * server. Its API is shaped like a small REST one (records, a token per project, paged
 * listings, status codes on failure); client.ts beside it is the only code that calls it.
 *
 * A project is created by the first caller that names it, with that caller's token; later
 * callers must present the same token.
 */
export interface TinyRecord {
  id: string;
  project: string;
  name: string;
  status: 'queued' | 'active' | 'disabled';
  hidden: boolean;
  visibility: 'public' | 'private';
  diskFormat: string;
  containerFormat: string;
  /** Free-form string attributes: metadata and markers alike. */
  attributes: Record<string, string>;
  size?: number;
  sha256?: string;
  createdAt: string;
  updatedAt: string;
}

/** A refusal with the status code an HTTP API would answer. */
export class TinyCloudError extends Error {
  constructor(
    readonly status: 400 | 401 | 404 | 409 | 413,
    message: string,
  ) {
    super(message);
  }
}

export type NewRecord = Pick<TinyRecord, 'name' | 'visibility' | 'diskFormat' | 'containerFormat' | 'attributes'>;
export type RecordChanges = Partial<Pick<TinyRecord, 'name' | 'visibility' | 'hidden' | 'status' | 'attributes'>>;

export class TinyCloud {
  readonly #tokens = new Map<string, string>();
  readonly #records = new Map<string, TinyRecord>();
  readonly #bytes = new Map<string, Buffer>();
  /** Refuses uploads larger than this (bytes). */
  maxUpload = 64 * 1024 * 1024;

  constructor(readonly name: string) {}

  /** The project the token opens; throws 401 for a wrong one. */
  authenticate(project: string, token: string): string {
    const known = this.#tokens.get(project);
    if (known === undefined) this.#tokens.set(project, token);
    else if (known !== token) throw new TinyCloudError(401, `the token is not valid for project ${project}`);
    return project;
  }

  list(project: string, page: { limit: number; marker?: string }): { records: TinyRecord[]; next?: string } {
    const mine = [...this.#records.values()]
      .filter((r) => r.project === project)
      .sort((a, b) => a.id.localeCompare(b.id));
    const start = page.marker === undefined ? 0 : mine.findIndex((r) => r.id > page.marker!);
    const slice = start < 0 ? [] : mine.slice(start, start + page.limit);
    const last = slice.at(-1);
    const more = last !== undefined && mine.at(-1)?.id !== last.id;
    return { records: slice.map(copy), ...(more ? { next: last.id } : {}) };
  }

  get(project: string, id: string): TinyRecord {
    const record = this.#records.get(id);
    if (!record || record.project !== project) throw new TinyCloudError(404, `no image ${id}`);
    return copy(record);
  }

  create(project: string, fields: NewRecord): TinyRecord {
    const now = new Date().toISOString();
    const id = `tc-${randomUUID()}`;
    const record: TinyRecord = {
      ...fields,
      attributes: { ...fields.attributes },
      id,
      project,
      status: 'queued',
      hidden: false,
      createdAt: now,
      updatedAt: now,
    };
    this.#records.set(id, record);
    return copy(record);
  }

  /** Stores the bytes of a queued image; it turns active, with the size and sha256 the cloud saw. */
  upload(project: string, id: string, data: Buffer): TinyRecord {
    const record = this.#own(project, id);
    if (record.status !== 'queued') throw new TinyCloudError(409, `image ${id} already has its data`);
    if (data.length > this.maxUpload) throw new TinyCloudError(413, `image ${id}: more than ${this.maxUpload} bytes`);
    this.#bytes.set(id, data);
    Object.assign(record, {
      status: 'active',
      size: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
    });
    record.updatedAt = new Date().toISOString();
    return copy(record);
  }

  update(project: string, id: string, changes: RecordChanges): TinyRecord {
    const record = this.#own(project, id);
    Object.assign(record, changes, changes.attributes ? { attributes: { ...changes.attributes } } : {});
    record.updatedAt = new Date().toISOString();
    return copy(record);
  }

  delete(project: string, id: string): void {
    this.#own(project, id);
    this.#records.delete(id);
    this.#bytes.delete(id);
  }

  read(project: string, id: string): Buffer {
    this.#own(project, id);
    const data = this.#bytes.get(id);
    if (!data) throw new TinyCloudError(409, `image ${id} has no data yet`);
    return data;
  }

  #own(project: string, id: string): TinyRecord {
    const record = this.#records.get(id);
    if (!record || record.project !== project) throw new TinyCloudError(404, `no image ${id}`);
    return record;
  }
}

const copy = (record: TinyRecord): TinyRecord => ({ ...record, attributes: { ...record.attributes } });

/**
 * The process's clouds by name. Kept on globalThis under a registered symbol: a process that
 * loads this package twice (visor imports it by name, a test imports its source) still has
 * one cloud of each name.
 */
const shared = globalThis as { [key: symbol]: Map<string, TinyCloud> | undefined };
const registryKey = Symbol.for('visor-adapter-tinycloud.clouds');
const registry = shared[registryKey] ?? new Map<string, TinyCloud>();
shared[registryKey] = registry;

/** The in-process cloud called `name`, created on first use. */
export function tinyCloud(name: string): TinyCloud {
  let cloud = registry.get(name);
  if (!cloud) {
    cloud = new TinyCloud(name);
    registry.set(name, cloud);
  }
  return cloud;
}
