import { resolveAttribute, coerceFilterValue } from '../image/attributes.js';
import { matchesSearch, readAttribute } from '../catalog/query.js';
import type { ImageQuery } from '../catalog/port.js';
import type { Image } from '../image/model.js';

/**
 * The catalog's query semantics written as plainly as possible: the oracle the property-based
 * contract test compares every catalog against.
 */
export function referenceQuery(images: readonly Image[], query: ImageQuery): Image[] {
  const filters = Object.entries(query.filters ?? {}).map(([path, value]) => {
    const attribute = resolveAttribute(path);
    return { attribute, value: coerceFilterValue(attribute, value) };
  });
  const visible = (image: Image) =>
    query.visibleTo === undefined ||
    image.access === 'public' ||
    image.owner === query.visibleTo ||
    (image.access === 'shared' && image.members.includes(query.visibleTo));
  const matches = (image: Image) =>
    !(query.hideDeleted && image.status === 'deleted') &&
    (query.search === undefined || matchesSearch(image, query.search)) &&
    filters.every(({ attribute, value }) => {
      const actual = readAttribute(image, attribute);
      return attribute.array ? Array.isArray(actual) && actual.includes(value) : actual === value;
    });
  const sort = resolveAttribute(query.sort ?? 'id');
  const sign = query.dir === 'desc' ? -1 : 1;
  return images
    .filter((i) => visible(i) && matches(i))
    .sort(
      (a, b) => sign * (compareValues(readAttribute(a, sort), readAttribute(b, sort)) || compareValues(a.id, b.id)),
    );
}

/** null/absent first, numbers numerically, strings by their UTF-8 bytes (SQLite's BINARY, MongoDB's default). */
export function compareValues(a: unknown, b: unknown): number {
  const an = a === undefined || a === null;
  const bn = b === undefined || b === null;
  if (an || bn) return an && bn ? 0 : an ? -1 : 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
}
