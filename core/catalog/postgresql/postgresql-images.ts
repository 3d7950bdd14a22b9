import { VisorError } from '../../errors.js';
import { applyChanges, validateImage, type Clock } from '../../image/image.js';
import type { Image, ImageChanges } from '../../image/model.js';
import type { ImageQuery, ImageRepository, Page } from '../port.js';
import { imageNotFound, normalizeQuery, readAttribute, staleRevision, unknownMarker } from '../query.js';
import { afterMarker, orderBy, Params, queryDoc, visibility, whereClause } from './postgresql-query.js';
import type { Sql } from './postgresql-sql.js';

export class PostgresImages implements ImageRepository {
  constructor(
    private readonly sql: Sql,
    private readonly clock: Clock,
  ) {}

  async create(image: Image): Promise<Image> {
    const valid = validateImage(image);
    const statement = `INSERT INTO ${this.sql.t('images')} (id, revision, body, doc) VALUES ($1, $2, $3, $4::jsonb)`;
    try {
      await this.sql.query(statement, [valid.id, valid.revision, JSON.stringify(valid), queryDoc(valid)]);
    } catch (error) {
      if (this.sql.isUnique(error)) {
        throw new VisorError('conflict', `an image with id ${valid.id} already exists`, { details: { id: valid.id } });
      }
      throw error;
    }
    return valid;
  }

  async get(id: string): Promise<Image> {
    const image = await this.find(id);
    if (!image) throw imageNotFound(id);
    return image;
  }

  async find(id: string): Promise<Image | undefined> {
    const rows = await this.sql.query<{ body: string }>(`SELECT body FROM ${this.sql.t('images')} WHERE id = $1`, [id]);
    return rows[0] ? (JSON.parse(rows[0].body) as Image) : undefined;
  }

  async list(query: ImageQuery = {}): Promise<Page<Image>> {
    const q = normalizeQuery(query);
    const params = new Params();
    const where = whereClause(q, params);
    if (q.marker !== undefined) {
      // A marker the caller may not see is no marker at all: no existence or value oracle.
      const markerParams = new Params();
      const id = markerParams.add(q.marker);
      const visible = visibility(q.visibleTo, markerParams);
      const markerWhere = `id = ${id}${visible ? ` AND ${visible}` : ''}`;
      const markerSql = `SELECT id, body FROM ${this.sql.t('images')} WHERE ${markerWhere}`;
      const marker = (await this.sql.query<{ id: string; body: string }>(markerSql, markerParams.values))[0];
      if (!marker) throw unknownMarker(q.marker);
      const value = q.sort.path === 'id' ? marker.id : readAttribute(JSON.parse(marker.body), q.sort);
      where.push(afterMarker(q, value ?? null, marker.id, params));
    }
    const limit = q.limit !== undefined ? ` LIMIT ${params.add(q.limit + 1)}` : '';
    const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
    const statement = `SELECT body FROM ${this.sql.t('images')}${filter} ORDER BY ${orderBy(q)}${limit}`;
    const rows = await this.sql.query<{ body: string }>(statement, params.values);
    const more = q.limit !== undefined && rows.length > q.limit;
    const items = (more ? rows.slice(0, q.limit) : rows).map((r) => JSON.parse(r.body) as Image);
    const last = items[items.length - 1];
    return more && last ? { items, nextMarker: last.id } : { items };
  }

  async count(query: Pick<ImageQuery, 'filters' | 'visibleTo' | 'hideDeleted' | 'search'> = {}): Promise<number> {
    const params = new Params();
    const where = whereClause(normalizeQuery(query), params);
    const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
    const rows = await this.sql.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${this.sql.t('images')}${filter}`,
      params.values,
    );
    return Number(rows[0]?.n ?? 0);
  }

  async update(id: string, expectedRevision: number, changes: ImageChanges): Promise<Image> {
    const current = await this.find(id);
    if (!current) throw imageNotFound(id);
    if (current.revision !== expectedRevision) throw staleRevision(id, expectedRevision, current.revision);
    const next = applyChanges(current, changes, this.clock);
    // The revision in the WHERE makes check-and-write one atomic step: of two writers of the
    // same revision, on any server, exactly one changes a row.
    const statement =
      `UPDATE ${this.sql.t('images')} SET revision = $2, body = $3, doc = $4::jsonb ` +
      'WHERE id = $1 AND revision = $5';
    const changed = await this.sql.execute(statement, [
      id,
      next.revision,
      JSON.stringify(next),
      queryDoc(next),
      expectedRevision,
    ]);
    if (changed === 0) {
      const now = await this.find(id);
      if (!now) throw imageNotFound(id);
      throw staleRevision(id, expectedRevision, now.revision);
    }
    return next;
  }

  async delete(id: string, expectedRevision?: number): Promise<void> {
    const params: unknown[] = [id];
    let revision = '';
    if (expectedRevision !== undefined) {
      params.push(expectedRevision);
      revision = ' AND revision = $2';
    }
    const changed = await this.sql.execute(`DELETE FROM ${this.sql.t('images')} WHERE id = $1${revision}`, params);
    if (changed === 1) return;
    const now = await this.find(id);
    if (!now) throw imageNotFound(id);
    throw staleRevision(id, expectedRevision ?? now.revision, now.revision);
  }
}
