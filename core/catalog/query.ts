import { VisorError } from '../errors.js';
import { coerceFilterValue, resolveAttribute, type Attribute, type FilterValue } from '../image/attributes.js';
import { uuidPattern } from '../image/schema.js';
import { DEFAULT_SORT, MAX_FILTERS, MAX_LIMIT, MAX_SEARCH, type ImageQuery, type SortDirection } from './port.js';

/** A query after validation, shared by every catalog implementation. */
export interface NormalizedQuery {
  filters: { attribute: Attribute; value: FilterValue }[];
  visibleTo: string | undefined;
  hideDeleted: boolean;
  /** Text searched for; undefined when none (an empty search text is no search). */
  search: string | undefined;
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
  const search = normalizeSearch(query.search);
  const hideDeleted = query.hideDeleted === true;
  return { filters, visibleTo: query.visibleTo, hideDeleted, search, sort, dir, limit, marker };
}

function normalizeSearch(search: unknown): string | undefined {
  if (search === undefined || search === '') return undefined;
  if (typeof search !== 'string') throw new VisorError('invalidInput', 'search must be text');
  // Names and tags hold no control characters; refusing them keeps a search within one field.
  if (/[\u0000-\u001f\u007f]/.test(search))
    throw new VisorError('invalidInput', 'search text must not hold control characters');
  if ([...search].length > MAX_SEARCH)
    throw new VisorError('invalidInput', `search text is too long: at most ${MAX_SEARCH} characters`);
  return search;
}

/** The custom property searched beside the name and the tags. */
export const SEARCHED_PROPERTY = 'description';

/** A LIKE pattern finding `text` anywhere, escaped with a backslash: `%`, `_` and `\\` stand for themselves. */
export function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * A regular expression (PCRE, as MongoDB's, or JavaScript's) matching `text` literally: every
 * metacharacter escaped, and U+0000, which MongoDB refuses inside a pattern, written as `\\x00`.
 */
export function literalRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\\-/]/g, '\\$&').replaceAll('\u0000', '\\x00');
}

/** ASCII letters folded to lower case: the case-insensitivity every catalog offers alike. */
export function foldAscii(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Whether `image` matches a search text (the semantics every catalog implements natively). */
export function matchesSearch(
  image: { name: string; tags: readonly string[]; properties: Record<string, string> },
  search: string,
): boolean {
  const wanted = foldAscii(search);
  const description = image.properties[SEARCHED_PROPERTY];
  return [image.name, ...image.tags, ...(description === undefined ? [] : [description])].some((text) =>
    foldAscii(text).includes(wanted),
  );
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
