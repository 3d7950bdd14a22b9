import { VisorError } from '../errors.js';
import { coerceFilterValue, resolveAttribute, type Attribute, type FilterValue } from '../image/attributes.js';
import { uuidPattern } from '../image/schema.js';
import { DEFAULT_SORT, MAX_FILTERS, MAX_LIMIT, type ImageQuery, type SortDirection } from './port.js';

/** A query after validation, shared by every catalog implementation. */
export interface NormalizedQuery {
  filters: { attribute: Attribute; value: FilterValue }[];
  visibleTo: string | undefined;
  hideDeleted: boolean;
  sort: Attribute;
  dir: SortDirection;
  limit: number | undefined;
  marker: string | undefined;
}

export function normalizeQuery(query: ImageQuery = {}): NormalizedQuery {
  const given = Object.keys(query.filters ?? {}).length;
  if (given > MAX_FILTERS) {
    throw new VisorError('invalidInput', `too many filters (${given}): at most ${MAX_FILTERS} in one query`);
  }
  const filters = Object.entries(query.filters ?? {}).map(([path, value]) => {
    const attribute = resolveAttribute(path);
    return { attribute, value: coerceFilterValue(attribute, value) };
  });
  const sort = resolveAttribute(query.sort ?? DEFAULT_SORT);
  if (sort.array) throw new VisorError('invalidInput', `cannot sort by ${sort.path}: it is a list`);
  const dir = query.dir ?? 'asc';
  if (dir !== 'asc' && dir !== 'desc')
    throw new VisorError('invalidInput', `dir must be asc or desc, got "${String(dir)}"`);
  const limit = query.limit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)) {
    throw new VisorError('invalidInput', `limit must be an integer from 1 to ${MAX_LIMIT}, got ${String(limit)}`);
  }
  const marker = query.marker;
  if (marker !== undefined && !uuidPattern.test(marker))
    throw new VisorError('invalidInput', `marker must be an image id, got "${marker}"`);
  return { filters, visibleTo: query.visibleTo, hideDeleted: query.hideDeleted === true, sort, dir, limit, marker };
}

export function unknownMarker(marker: string): VisorError {
  return new VisorError('invalidInput', `marker ${marker} does not name an image`, { details: { marker } });
}

/** Reads an attribute's value out of an image document (undefined when absent). */
export function readAttribute(doc: unknown, attribute: Attribute): unknown {
  let value: unknown = doc;
  for (const segment of attribute.segments) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

export function imageNotFound(id: string): VisorError {
  return new VisorError('notFound', `no image with id ${id}`, { details: { id } });
}

export function staleRevision(id: string, expected: number, actual: number): VisorError {
  return new VisorError(
    'conflict',
    `image ${id} was changed by someone else (revision ${actual}, expected ${expected})`,
    {
      details: { id, expected, actual },
    },
  );
}
