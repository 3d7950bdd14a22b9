import type { FilterValue } from '../image/attributes.js';
import type { Image, ImageChanges } from '../image/model.js';

export type SortDirection = 'asc' | 'desc';

/**
 * VISOR's query semantics: equality filters on any attribute (arrays match when they contain
 * the value; custom properties as `properties.<key>`), one sort attribute with the id as the
 * tie-breaker, and keyset paging by marker (the id of the last image of the previous page).
 */
export interface ImageQuery {
  filters?: Readonly<Record<string, FilterValue>>;
  /** Only images this owner may see: public ones, its own, and shared ones that name it. */
  visibleTo?: string;
  sort?: string;
  dir?: SortDirection;
  limit?: number;
  marker?: string;
}

export interface Page<T> {
  items: T[];
  /** Marker for the next page; absent on the last page. */
  nextMarker?: string;
}

export interface ImageRepository {
  /** Stores a complete, new image (see `newImage`); an existing id is a conflict. */
  create(image: Image): Promise<Image>;
  /** Throws a notFound error when there is no such image. */
  get(id: string): Promise<Image>;
  find(id: string): Promise<Image | undefined>;
  list(query?: ImageQuery): Promise<Page<Image>>;
  count(query?: Pick<ImageQuery, 'filters' | 'visibleTo'>): Promise<number>;
  /**
   * Applies `changes` if the stored revision still equals `expectedRevision`; otherwise a
   * conflict error, and nothing is written.
   */
  update(id: string, expectedRevision: number, changes: ImageChanges): Promise<Image>;
  /** Deletes the image; with `expectedRevision`, only if nobody changed it since. */
  delete(id: string, expectedRevision?: number): Promise<void>;
}

/** An API user. The secret is stored sealed (see core/auth/secret-box.ts), never in clear. */
export interface User {
  name: string;
  accessKey: string;
  sealedSecret: string;
  admin: boolean;
  createdAt: string;
}

export interface UserRepository {
  /** A second user with the same name or access key is a conflict. */
  create(user: User): Promise<User>;
  findByName(name: string): Promise<User | undefined>;
  findByAccessKey(accessKey: string): Promise<User | undefined>;
  list(): Promise<User[]>;
  /** Throws notFound when there is no such user. */
  delete(name: string): Promise<void>;
}

/** The catalog port: where image metadata, users (and later the agent's records) live. */
export interface Catalog {
  readonly kind: string;
  readonly images: ImageRepository;
  readonly users: UserRepository;
  /** Creates tables/collections and indexes; idempotent. */
  init(): Promise<void>;
  /** Releases connections; safe to call twice. */
  close(): Promise<void>;
}

export const DEFAULT_SORT = 'id';
export const MAX_LIMIT = 10_000;
