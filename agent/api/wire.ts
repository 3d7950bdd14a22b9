import { VisorError } from '../../core/errors.js';
import { MAX_FILTERS, type ImageQuery, type SortDirection } from '../../core/catalog/port.js';
import type { Checksums, Image } from '../../core/image/model.js';
import { propertyKeyPattern } from '../../core/image/schema.js';
import { glanceAliases, glanceValue, refuseGlanceKey, refuseTypo } from './query-keys.js';
import { decodeHeaderValue, encodeHeaderValue, META_PREFIX } from './headers.js';

export { decodeHeaderValue, encodeHeaderValue, META_PREFIX };

/**
 * VISOR's wire format. Images travel as flat objects with VISOR's names (`_id`, `format`,
 * `store`, `created_at`, ...) and custom properties as top-level keys, in JSON bodies or as
 * `x-image-meta-<key>` headers. This module is the only place that knows both spellings.
 */

export type WireImage = Record<string, string | number | string[] | Record<string, string>>;

/** VISOR's brief view: enough for a listing. */
export function toBrief(image: Image): WireImage {
  return compact({
    _id: image.id,
    name: image.name,
    architecture: image.architecture,
    type: image.type,
    format: image.diskFormat,
    store: image.location?.store,
    size: image.size,
  });
}

/**
 * VISOR's detail view. Where a stored image's bytes live (a server path, a bucket key) is shown
 * to admins only; an HTTP reference's URL is public knowledge and shown to everyone.
 */
export function toDetail(
  image: Image,
  baseUrl: string,
  showLocation = true,
  names: ReadonlyMap<string, string> = new Map(),
): WireImage {
  // Owners and members are kept as user ids (stable); people read and write them as names.
  const person = (id: string) => names.get(id) ?? id;
  return withProperties(image.properties, {
    _id: image.id,
    uri: `${baseUrl}/images/${image.id}`,
    name: image.name,
    architecture: image.architecture,
    access: image.access,
    status: image.status,
    type: image.type,
    format: image.diskFormat,
    container_format: image.containerFormat,
    store: image.location?.store,
    location:
      showLocation || image.location?.store === 'http' || /^https?:/.test(image.location?.uri ?? '')
        ? image.location?.uri
        : undefined,
    size: image.size,
    virtual_size: image.virtualSize,
    checksum: image.checksums.md5,
    checksums: Object.keys(image.checksums).length > 0 ? (image.checksums as Record<string, string>) : undefined,
    // Digests still being computed from the stored bytes (after an upload, off its request path).
    checksums_pending: image.checksumsPending,
    kernel: image.kernelId,
    ramdisk: image.ramdiskId,
    owner: image.owner === undefined ? undefined : person(image.owner),
    owner_id: image.owner,
    members: image.members.length > 0 ? image.members.map(person) : undefined,
    min_disk: image.minDisk,
    min_ram: image.minRam,
    os_type: image.os?.type,
    os_distro: image.os?.distro,
    os_version: image.os?.version,
    tags: image.tags,
    created_at: image.createdAt,
    updated_at: image.updatedAt,
    uploaded_at: image.uploadedAt,
    family: image.family,
    // Booleans as VISOR's other flags travel: text, so that headers and JSON say the same.
    exclude_from_latest: image.excludeFromLatest === undefined ? undefined : String(image.excludeFromLatest),
    protected: image.protected === undefined ? undefined : String(image.protected),
    deprecation_state: image.deprecation?.state,
    replacement: image.deprecation?.replacement,
    deprecated_at: image.deprecation?.since,
    obsolete_on: image.deprecation?.obsoleteOn,
    delete_on: image.deprecation?.deleteOn,
    deleted_at: image.deletedAt,
    purge_after: image.purgeAfter,
    revision: image.revision,
  });
}

/** Wire names that are the service's to set. */
const readOnly = new Set([
  '_id',
  'id',
  'owner_id',
  'uri',
  'status',
  'store',
  'size',
  'virtual_size',
  'checksums',
  'checksums_pending',
  'created_at',
  'updated_at',
  'uploaded_at',
  'accessed_at',
  'access_count',
  'revision',
  // Changed by deprecate / undeprecate / delete / restore, never by an update.
  'deprecation_state',
  'replacement',
  'deprecated_at',
  'obsolete_on',
  'delete_on',
  'deleted_at',
  'purge_after',
]);

const simple: Record<string, string> = {
  name: 'name',
  architecture: 'architecture',
  access: 'access',
  type: 'type',
  format: 'diskFormat',
  disk_format: 'diskFormat',
  container_format: 'containerFormat',
  kernel: 'kernelId',
  ramdisk: 'ramdiskId',
  owner: 'owner',
  family: 'family',
};
const flags: Record<string, string> = { protected: 'protected', exclude_from_latest: 'excludeFromLatest' };
const numeric: Record<string, string> = { min_disk: 'minDisk', min_ram: 'minRam' };
const lists = new Set(['tags', 'members']);
const osKeys: Record<string, 'type' | 'distro' | 'version'> = {
  os_type: 'type',
  os_distro: 'distro',
  os_version: 'version',
};

export interface ParsedMetadata {
  /** Generic field changes; `null` clears an optional field. */
  fields: Record<string, unknown>;
  /** An HTTP(S) location to reference instead of uploading. */
  location?: string;
  /** The store the new image's bits go to (VISOR's `store=`), on registration only. */
  store?: string;
  /** Checksums the client declares for the bits it sends (verified, never trusted). */
  expected: Checksums;
}

/**
 * Reads client metadata in VISOR's spelling. `fromHeaders` means every value is text (header
 * values), so numbers and lists are parsed from it. Every bad key is named in one error.
 */
export function fromWire(input: Record<string, unknown>, fromHeaders = false, creating = false): ParsedMetadata {
  const fields: Record<string, unknown> = {};
  const properties: Record<string, string | null> = {};
  const os: Record<string, string | null> = {};
  const expected: Checksums = {};
  const problems: string[] = [];
  let location: string | undefined;
  let store: string | undefined;
  for (const [rawKey, value] of Object.entries(input)) {
    const key = rawKey.toLowerCase() === rawKey ? rawKey : rawKey.toLowerCase();
    if (key === 'store') {
      // VISOR chose the store when an image was registered; moving an image is not an update.
      if (!creating) problems.push('store is chosen when an image is registered and cannot be changed by an update');
      else if (typeof value !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(value))
        problems.push('store must be a store name');
      else store = value;
    } else if (readOnly.has(key)) {
      problems.push(`${rawKey} is set by visor, not by clients`);
    } else if (Object.hasOwn(simple, key)) {
      fields[simple[key]!] = value;
    } else if (Object.hasOwn(flags, key)) {
      const flag = value === null || value === '' ? null : flagValue(value);
      if (flag === undefined) problems.push(`${rawKey} must be true or false`);
      else fields[flags[key]!] = flag;
    } else if (Object.hasOwn(numeric, key)) {
      fields[numeric[key]!] = fromHeaders && typeof value === 'string' && value !== '' ? Number(value) : value;
    } else if (lists.has(key)) {
      fields[key] =
        fromHeaders && typeof value === 'string'
          ? value
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : value;
    } else if (Object.hasOwn(osKeys, key)) {
      if (value === null || typeof value === 'string' || typeof value === 'number')
        os[osKeys[key]!] = value === null ? null : String(value);
      else problems.push(`${rawKey} must be text`);
    } else if (key === 'location') {
      if (typeof value !== 'string') problems.push('location must be a URL');
      else location = value;
    } else if (key === 'checksum' || key === 'md5' || key === 'sha256' || key === 'sha512') {
      if (typeof value !== 'string') problems.push(`${rawKey} must be a hex string`);
      else expected[key === 'checksum' ? 'md5' : key] = value.toLowerCase();
    } else if (propertyKeyPattern.test(rawKey)) {
      if (value === null) properties[rawKey] = null;
      else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
        properties[rawKey] = String(value);
      else problems.push(`custom property ${rawKey} must be text, a number or true/false`);
    } else {
      problems.push(`"${rawKey}" is not a valid attribute or property name`);
    }
  }
  if (problems.length > 0)
    throw new VisorError('invalidInput', `invalid metadata: ${problems.join('; ')}`, { details: { problems } });
  if (Object.keys(os).length > 0) fields['os'] = os;
  if (Object.keys(properties).length > 0) fields['properties'] = properties;
  return {
    fields,
    ...(location !== undefined ? { location } : {}),
    ...(store !== undefined ? { store } : {}),
    expected,
  };
}

/** Merges OS changes into the current OS (the wire spells them as three flat keys). */
export function mergeOs(current: Image['os'], change: Record<string, string | null>): Image['os'] | null {
  const next: Record<string, string> = { ...(current ?? {}) };
  for (const [k, v] of Object.entries(change)) {
    if (v === null || v === '') delete next[k];
    else next[k] = v;
  }
  return Object.keys(next).length > 0 ? next : null;
}

/** VISOR query-string names -> catalog attribute paths; anything else is a custom property. */
const queryAttributes: Record<string, string> = {
  _id: 'id',
  id: 'id',
  name: 'name',
  architecture: 'architecture',
  access: 'access',
  status: 'status',
  type: 'type',
  format: 'diskFormat',
  disk_format: 'diskFormat',
  container_format: 'containerFormat',
  store: 'location.store',
  location: 'location.uri',
  size: 'size',
  virtual_size: 'virtualSize',
  checksum: 'checksums.md5',
  md5: 'checksums.md5',
  sha256: 'checksums.sha256',
  sha512: 'checksums.sha512',
  checksums_pending: 'checksumsPending',
  kernel: 'kernelId',
  ramdisk: 'ramdiskId',
  owner: 'owner',
  member: 'members',
  members: 'members',
  tag: 'tags',
  tags: 'tags',
  min_disk: 'minDisk',
  min_ram: 'minRam',
  os_type: 'os.type',
  os_distro: 'os.distro',
  os_version: 'os.version',
  created_at: 'createdAt',
  updated_at: 'updatedAt',
  uploaded_at: 'uploadedAt',
  revision: 'revision',
  family: 'family',
  deprecation_state: 'deprecation.state',
  replacement: 'deprecation.replacement',
  deleted_at: 'deletedAt',
  purge_after: 'purgeAfter',
};

export function attributeFor(wireName: string): string {
  // Own keys only: "__proto__" or "constructor" must not find Object's.
  if (Object.hasOwn(queryAttributes, wireName)) return queryAttributes[wireName]!;
  if (propertyKeyPattern.test(wireName)) return `properties.${wireName}`;
  throw new VisorError('invalidInput', `"${wireName.slice(0, 100)}" is not a valid attribute or property name`);
}

const controlKeys = ['sort', 'dir', 'limit', 'marker', 'search'];
const knownQueryKeys = [...Object.keys(queryAttributes), ...controlKeys];

/**
 * A filter key: a known attribute, `property.KEY` (always a custom property), or a bare custom
 * property name unless it looks like a typo of a known key.
 */
function filterAttribute(key: string): string {
  if (key.startsWith('property.')) {
    const name = key.slice('property.'.length);
    if (!propertyKeyPattern.test(name)) {
      throw new VisorError('invalidInput', `"${key.slice(0, 100)}": "${name.slice(0, 100)}" is not a property name`);
    }
    return `properties.${name}`;
  }
  if (!Object.hasOwn(queryAttributes, key)) refuseTypo(key, knownQueryKeys);
  return attributeFor(key);
}

/** `?architecture=x86_64&search=ubuntu&sort=name&dir=desc&limit=10&marker=<id>` -> a catalog query. */
export function queryFromWire(params: URLSearchParams, defaultLimit: number): ImageQuery {
  const filters: Record<string, string> = {};
  const query: ImageQuery = { limit: defaultLimit };
  for (const [given, rawValue] of params) {
    refuseGlanceKey(given);
    const key = Object.hasOwn(glanceAliases, given) ? glanceAliases[given]! : given;
    const value = Object.hasOwn(glanceAliases, given) ? glanceValue(given, rawValue) : rawValue;
    if (key === 'sort') query.sort = attributeFor(value);
    else if (key === 'dir') {
      if (value !== 'asc' && value !== 'desc')
        throw new VisorError('invalidInput', `dir must be asc or desc, got "${value.slice(0, 20)}"`);
      query.dir = value as SortDirection;
    } else if (key === 'limit') {
      if (!/^\d{1,6}$/.test(value))
        throw new VisorError('invalidInput', `limit must be a whole number, got "${value.slice(0, 20)}"`);
      query.limit = Number(value);
    } else if (key === 'marker') query.marker = value;
    // Not a filter: VISOR's filters are exact; this finds text in the name, tags and description.
    else if (key === 'search') {
      if (query.search !== undefined) throw new VisorError('invalidInput', 'search is given twice');
      query.search = value;
    } else {
      const attribute = filterAttribute(key);
      if (attribute in filters) throw new VisorError('invalidInput', `filter ${key} is given twice`);
      // Checked as they come: thousands of filters would make a query the catalog cannot run.
      if (Object.keys(filters).length >= MAX_FILTERS) {
        throw new VisorError('invalidInput', `too many filters: at most ${MAX_FILTERS} in one query`);
      }
      filters[attribute] = value;
    }
  }
  if (Object.keys(filters).length > 0) query.filters = filters;
  return query;
}

/** Detail metadata as `x-image-meta-*` headers (HEAD and GET of an image). */
export function toHeaders(
  image: Image,
  baseUrl: string,
  showLocation = true,
  names?: ReadonlyMap<string, string>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(toDetail(image, baseUrl, showLocation, names))) {
    if (key === 'checksums') {
      for (const [alg, hex] of Object.entries(value as Record<string, string>)) out[`${META_PREFIX}${alg}`] = hex;
      continue;
    }
    out[`${META_PREFIX}${key.toLowerCase()}`] = encodeHeaderValue(
      Array.isArray(value) ? value.join(',') : String(value),
    );
  }
  return out;
}

/** Reads `x-image-meta-*` request headers into wire metadata (values are text). */
export function metadataFromHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(META_PREFIX) || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(',') : value;
    Object.defineProperty(out, name.slice(META_PREFIX.length), {
      value: decodeHeaderValue(asciiOrUtf8(name, text)),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/** true/false as JSON or as text (headers, the CLI); undefined for anything else. */
function flagValue(value: unknown): boolean | undefined {
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  return undefined;
}

function compact(value: Record<string, unknown>): WireImage {
  const out: WireImage = {};
  for (const key in value) {
    const v = value[key];
    if (v !== undefined) out[key] = v as WireImage[string];
  }
  return out;
}

/**
 * `compact({ ...properties, ...fields })`, without spreading: a literal of forty fields after a
 * spread of properties took V8 ~50 µs per image (each field a new hidden class), more than the
 * rest of a listing. Same keys, same order, same values: properties first, a field named like a
 * property (none can be, see reservedPropertyKeys) overriding it in place.
 */
function withProperties(properties: Readonly<Record<string, unknown>> | undefined, fields: Record<string, unknown>) {
  const out: WireImage = {};
  for (const key in properties) {
    if (!Object.hasOwn(properties, key)) continue;
    const v = Object.hasOwn(fields, key) ? fields[key] : properties[key];
    if (v !== undefined) out[key] = v as WireImage[string];
  }
  for (const key in fields) {
    const v = fields[key];
    if (v !== undefined && !Object.hasOwn(out, key)) out[key] = v as WireImage[string];
  }
  return out;
}

/**
 * Header values arrive as latin1; visor's clients percent-encode anything beyond ASCII. Raw
 * bytes are taken when they are valid UTF-8 (older clients send that), refused otherwise.
 */
function asciiOrUtf8(name: string, value: string): string {
  if (!/[^\x00-\x7f]/.test(value)) return value;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(value, 'latin1'));
  } catch {
    throw new VisorError('invalidInput', `header ${name} is not valid UTF-8 (percent-encode values beyond ASCII)`);
  }
}
