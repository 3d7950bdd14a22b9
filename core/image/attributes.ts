import { VisorError } from '../errors.js';
import { propertyKeyPattern } from './schema.js';

/** How an attribute can be filtered and sorted on, whatever the catalog behind it. */
export interface Attribute {
  /** Canonical dotted path inside the image document, e.g. `os.distro` or `properties.hw_disk_bus`. */
  path: string;
  /** Path segments, for building JSON paths (SQLite) or dotted paths (MongoDB). */
  segments: readonly string[];
  valueType: 'string' | 'number';
  /** Arrays match when they contain the value; they cannot be sorted on. */
  array: boolean;
}

const scalar = (path: string, valueType: 'string' | 'number' = 'string'): Attribute => ({
  path,
  segments: path.split('.'),
  valueType,
  array: false,
});

const known: readonly Attribute[] = [
  ...[
    'id',
    'name',
    'architecture',
    'diskFormat',
    'containerFormat',
    'type',
    'kernelId',
    'ramdiskId',
    'access',
    'owner',
    'status',
  ].map((p) => scalar(p)),
  ...['family', 'deprecation.state', 'deprecation.replacement', 'deletedAt', 'purgeAfter'].map((p) => scalar(p)),
  ...['size', 'virtualSize', 'minDisk', 'minRam', 'revision'].map((p) => scalar(p, 'number')),
  ...['createdAt', 'updatedAt', 'uploadedAt'].map((p) => scalar(p)),
  ...[
    'os.type',
    'os.distro',
    'os.version',
    'checksums.md5',
    'checksums.sha256',
    'checksums.sha512',
    'location.store',
    'location.uri',
  ].map((p) => scalar(p)),
  { path: 'tags', segments: ['tags'], valueType: 'string', array: true },
  { path: 'members', segments: ['members'], valueType: 'string', array: true },
  { path: 'checksumsPending', segments: ['checksumsPending'], valueType: 'string', array: true },
];
const byPath = new Map(known.map((a) => [a.path, a]));

export const knownAttributePaths: readonly string[] = known.map((a) => a.path);

/** Resolves `name`, `os.distro`, `properties.foo`, ...; anything else is an invalidInput error. */
export function resolveAttribute(path: string): Attribute {
  const attribute = byPath.get(path);
  if (attribute) return attribute;
  if (path.startsWith('properties.')) {
    const key = path.slice('properties.'.length);
    if (propertyKeyPattern.test(key)) return { path, segments: ['properties', key], valueType: 'string', array: false };
  }
  throw new VisorError('invalidInput', `unknown attribute "${path}"`, { details: { attribute: path } });
}

export type FilterValue = string | number;

/** Turns a filter value given as text (query strings, CLI) into the attribute's type. */
export function coerceFilterValue(attribute: Attribute, raw: FilterValue): FilterValue {
  if (attribute.valueType === 'string') return String(raw);
  const n = typeof raw === 'number' ? raw : Number(raw);
  if (typeof raw === 'string' && (raw.trim() === '' || !Number.isFinite(n))) {
    throw new VisorError('invalidInput', `${attribute.path} must be a number, got "${raw}"`, {
      details: { attribute: attribute.path },
    });
  }
  return n;
}
