import type { Architecture, Checksums } from '../../image/model.js';
import { propertyKeyPattern } from '../../image/schema.js';
import { sourceError, type SourceEntry } from '../port.js';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseJson(content: Buffer, what: string): Json {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch (error) {
    throw sourceError('malformed', `${what} is not JSON: ${(error as Error).message}`);
  }
  if (!isObject(json)) throw sourceError('malformed', `${what} is not a JSON object`);
  return json;
}

/** A `path` of a stream: relative to the mirror root, never absolute, never with a `..` segment. */
export function checkPath(path: unknown, what: string): string {
  if (typeof path !== 'string' || path.length === 0) throw sourceError('malformed', `${what}: path must be a string`);
  const bad =
    path.startsWith('/') ||
    /^[a-z][a-z0-9+.-]*:/i.test(path) ||
    path.split(/[\\/]/).some((s) => s === '..') ||
    path.includes('\0');
  if (bad) throw sourceError('unsafePath', `${what}: path "${path.slice(0, 100)}" is absolute or leaves the mirror`);
  return path;
}

export interface IndexEntry {
  contentId: string;
  path: string;
}

/** The product documents an `index:1.0` names, of the image-downloads kind. */
export function readIndex(index: Json, contentIds: readonly string[] | undefined): IndexEntry[] {
  if (index['format'] !== 'index:1.0' || !isObject(index['index'])) {
    throw sourceError('malformed', 'the stream index is not of format index:1.0');
  }
  const out: IndexEntry[] = [];
  for (const [contentId, entry] of Object.entries(index['index'])) {
    if (!isObject(entry)) throw sourceError('malformed', `index entry ${contentId} is not an object`);
    if (entry['format'] !== 'products:1.0') continue;
    if (entry['datatype'] !== undefined && entry['datatype'] !== 'image-downloads') continue;
    if (contentIds && contentIds.length > 0 && !contentIds.includes(contentId)) continue;
    out.push({ contentId, path: checkPath(entry['path'], `index entry ${contentId}`) });
  }
  return out;
}

/** One item, its fields inherited top -> product -> version -> item (simplestreams' rule). */
export interface FlatItem {
  contentId: string;
  product: string;
  version: string;
  item: string;
  fields: Record<string, string>;
}

const scalar = (v: unknown) =>
  typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
function scalars(o: Json, skip: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    const s = k === skip ? undefined : scalar(v);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

export function flattenProducts(doc: Json, contentId: string): FlatItem[] {
  if (doc['format'] !== 'products:1.0' || !isObject(doc['products'])) {
    throw sourceError('malformed', `products document of ${contentId} is not of format products:1.0`);
  }
  if (doc['content_id'] !== undefined && doc['content_id'] !== contentId) {
    throw sourceError(
      'malformed',
      `products document says content_id ${String(doc['content_id'])}, the index ${contentId}`,
    );
  }
  const top = scalars(doc, 'products');
  const out: FlatItem[] = [];
  for (const [product, p] of Object.entries(doc['products'])) {
    if (!isObject(p) || !isObject(p['versions'])) throw sourceError('malformed', `product ${product} has no versions`);
    const productFields = { ...top, ...scalars(p, 'versions') };
    for (const [version, v] of Object.entries(p['versions'])) {
      if (!isObject(v) || !isObject(v['items']))
        throw sourceError('malformed', `${product} version ${version} has no items`);
      const versionFields = { ...productFields, ...scalars(v, 'items') };
      for (const [item, i] of Object.entries(v['items'])) {
        if (!isObject(i)) throw sourceError('malformed', `${product} ${version} item ${item} is not an object`);
        // As simplestreams flattens: the names of each level are fields too (filters use them).
        const names = { content_id: contentId, product_name: product, version_name: version, item_name: item };
        out.push({ contentId, product, version, item, fields: { ...versionFields, ...scalars(i, ''), ...names } });
      }
    }
  }
  return out;
}

/** Version names order as byte strings (`LANG=C`), as simplestreams does. */
export function newestVersions(items: FlatItem[]): FlatItem[] {
  const newest = new Map<string, string>();
  for (const i of items) {
    const key = `${i.contentId}\0${i.product}`;
    const seen = newest.get(key);
    if (seen === undefined || Buffer.compare(Buffer.from(i.version), Buffer.from(seen)) > 0) newest.set(key, i.version);
  }
  return items.filter((i) => newest.get(`${i.contentId}\0${i.product}`) === i.version);
}

const arches: Record<string, Architecture> = {
  amd64: 'x86_64',
  x86_64: 'x86_64',
  i386: 'i386',
  arm64: 'aarch64',
  armhf: 'armv7l',
  ppc64el: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

const digests: [keyof Checksums, number][] = [
  ['md5', 32],
  ['sha256', 64],
  ['sha512', 128],
];

export function itemEntry(item: FlatItem, root: URL): SourceEntry {
  const f = item.fields;
  const where = `${item.contentId} ${item.product} ${item.version} ${item.item}`;
  const path = checkPath(f['path'], where);
  const checksums: Checksums = {};
  for (const [alg, length] of digests) {
    const value = f[alg]?.toLowerCase();
    if (value === undefined) continue;
    if (!new RegExp(`^[0-9a-f]{${length}}$`).test(value))
      throw sourceError('malformed', `${where}: ${alg} is not a digest`);
    checksums[alg] = value;
  }
  if (Object.keys(checksums).length === 0) throw sourceError('malformed', `${where} states no md5, sha256 or sha512`);
  const size = f['size'] !== undefined ? Number(f['size']) : undefined;
  if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0))
    throw sourceError('malformed', `${where}: size is not a byte count`);
  const properties: Record<string, string> = {};
  for (const [k, v] of Object.entries(f)) {
    const key = `simplestreams:${k.replace(/[^A-Za-z0-9_:-]/g, '_')}`;
    if (propertyKeyPattern.test(key) && Object.keys(properties).length < 64) properties[key] = v.slice(0, 255);
  }
  Object.assign(properties, {
    'simplestreams:content_id': item.contentId,
    'simplestreams:product_name': item.product,
    'simplestreams:version_name': item.version,
    'simplestreams:item_name': item.item,
  });
  const arch = arches[f['arch'] ?? ''];
  const os = f['os'];
  return {
    key: `${item.contentId}/${item.product}/${item.item}`,
    version: item.version,
    name: f['pubname'] ?? `${item.product}-${item.version}`,
    location: { url: new URL(path, root).href },
    ...(size !== undefined ? { size } : {}),
    checksums,
    // The file name and ftype say little (new `.img` items are qcow2): the inspector decides the format.
    containerFormat: 'bare',
    ...(arch ? { architecture: arch } : {}),
    ...(os || f['version']
      ? { os: { ...(os ? { distro: os } : {}), ...(f['version'] ? { version: f['version'] } : {}) } }
      : {}),
    ...(f['support_eol'] && !Number.isNaN(Date.parse(f['support_eol']))
      ? { expiresAt: new Date(f['support_eol']).toISOString() }
      : {}),
    properties,
  };
}
