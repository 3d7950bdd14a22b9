import type { Attribute, FilterValue } from '../../image/attributes.js';
import type { Image } from '../../image/model.js';
import { containsPattern, SEARCHED_PROPERTY, type NormalizedQuery } from '../query.js';

/** Positional parameters ($1, $2, ...) collected while a statement is built. */
export class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/**
 * SQL for an attribute's value. Segments come from `resolveAttribute`, whose patterns admit
 * no quote characters, so they can be written into the SQL text — as they must be, for the
 * expression indexes to match. Strings compare by their bytes (COLLATE "C"), numbers as numbers.
 */
export function expr(attribute: Attribute): string {
  if (attribute.path === 'id') return 'id';
  const segments = attribute.segments;
  const parents = segments
    .slice(0, -1)
    .map((s) => `->'${s}'`)
    .join('');
  const path = `${parents}->>'${segments[segments.length - 1]}'`;
  return attribute.valueType === 'number' ? `((doc${path})::numeric)` : `((doc${path}) COLLATE "C")`;
}

const cast = (attribute: Attribute) => (attribute.valueType === 'number' ? '::numeric' : '');

/**
 * The jsonb copy that queries run on. PostgreSQL's jsonb cannot hold U+0000, which a custom
 * property's value may contain: there (and in filter values) it becomes U+FFFD. The image itself
 * is kept exactly, in `body`.
 */
export function queryDoc(image: Image): string {
  const properties = Object.fromEntries(Object.entries(image.properties).map(([k, v]) => [k, sanitize(v)]));
  return JSON.stringify({ ...image, properties });
}

export function sanitize(value: string): string {
  return value.includes('\u0000') ? value.replaceAll('\u0000', '\ufffd') : value;
}

/**
 * Equality filters as one jsonb containment (`doc @> {...}`), which the GIN index answers:
 * a scalar matches itself, a list attribute matches when it contains the value.
 */
export function whereClause(q: NormalizedQuery, params: Params): string[] {
  const out: string[] = [];
  if (q.filters.length > 0) {
    const wanted: Record<string, unknown> = {};
    for (const { attribute, value } of q.filters)
      setPath(wanted, attribute, attribute.array ? [clean(value)] : clean(value));
    out.push(`doc @> ${params.add(JSON.stringify(wanted))}::jsonb`);
  }
  const visible = visibility(q.visibleTo, params);
  if (visible) out.push(visible);
  if (q.hideDeleted) out.push(`doc->>'status' <> 'deleted'`);
  if (q.search !== undefined) out.push(searchCondition(q.search, params));
  return out;
}

/** ILIKE, escaped so that the caller's `%` and `_` are plain text (U+0000 sanitized as in the documents). */
function searchCondition(search: string, params: Params): string {
  const p = params.add(containsPattern(sanitize(search)));
  const like = `ILIKE ${p} ESCAPE '\\'`;
  return (
    `(doc->>'name' ${like} OR ` +
    `EXISTS (SELECT 1 FROM jsonb_array_elements_text(doc->'tags') AS tag WHERE tag ${like}) OR ` +
    `doc->'properties'->>'${SEARCHED_PROPERTY}' ${like})`
  );
}

const clean = (value: FilterValue) => (typeof value === 'string' ? sanitize(value) : value);

function setPath(target: Record<string, unknown>, attribute: Attribute, value: unknown): void {
  let node = target;
  const segments = attribute.segments;
  for (const segment of segments.slice(0, -1)) {
    node[segment] ??= {};
    node = node[segment] as Record<string, unknown>;
  }
  node[segments[segments.length - 1]!] = value;
}

/** Images `user` may see: public ones, its own, and shared ones that name it. */
export function visibility(user: string | undefined, params: Params): string | undefined {
  if (user === undefined) return undefined;
  const u = params.add(user);
  return `(doc->>'access' = 'public' OR doc->>'owner' = ${u} OR (doc->>'access' = 'shared' AND doc->'members' ? ${u}))`;
}

/** ORDER BY: absent values first ascending and last descending, the id breaking ties. */
export function orderBy(q: NormalizedQuery): string {
  const dir = q.dir === 'desc' ? 'DESC' : 'ASC';
  if (q.sort.path === 'id') return `id ${dir}`;
  return `${expr(q.sort)} ${dir} NULLS ${q.dir === 'desc' ? 'LAST' : 'FIRST'}, id ${dir}`;
}

/** Keyset condition: rows strictly after (value, id) in the sort order (as SQLite's and MongoDB's). */
export function afterMarker(q: NormalizedQuery, value: unknown, id: string, params: Params): string {
  if (q.sort.path === 'id') return q.dir === 'asc' ? `id > ${params.add(id)}` : `id < ${params.add(id)}`;
  const e = expr(q.sort);
  const c = cast(q.sort);
  const v = value === null ? undefined : typeof value === 'string' ? sanitize(value) : value;
  if (q.dir === 'asc') {
    if (v === undefined) return `((${e} IS NULL AND id > ${params.add(id)}) OR ${e} IS NOT NULL)`;
    const p = params.add(v);
    return `(${e} > ${p}${c} OR (${e} = ${p}${c} AND id > ${params.add(id)}))`;
  }
  if (v === undefined) return `(${e} IS NULL AND id < ${params.add(id)})`;
  const p = params.add(v);
  return `(${e} < ${p}${c} OR ${e} IS NULL OR (${e} = ${p}${c} AND id < ${params.add(id)}))`;
}
