import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { VisorError } from '../../errors.js';
import { postgresError } from './postgresql-errors.js';
import { quoteIdent } from './postgresql-migrations.js';

type Querier = Pick<PoolClient, 'query'>;

/**
 * The repositories' one way to the database: statements on the pool (or inside a transaction),
 * table names qualified with the catalog's schema, and every driver error turned into a
 * VisorError that names the catalog.
 */
export class Sql {
  #pool: Pool | undefined;

  constructor(
    readonly schema: string,
    /** How the catalog is named in messages, e.g. `postgresql://visor@db1:5432/visor (schema visor)`. */
    readonly where: string,
    private readonly via?: Querier,
  ) {}

  attach(pool: Pool | undefined): void {
    this.#pool = pool;
  }

  get pool(): Pool {
    if (!this.#pool)
      throw new VisorError('unavailable', `PostgreSQL catalog ${this.where} is not open (call init first)`);
    return this.#pool;
  }

  /** `"schema".name` */
  t(name: string): string {
    return `${quoteIdent(this.schema)}.${name}`;
  }

  async query<R extends QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    try {
      return (await (this.via ?? this.pool).query<R>(text, values)).rows;
    } catch (error) {
      throw this.error(error);
    }
  }

  /** Runs a statement and returns how many rows it changed. */
  async execute(text: string, values: unknown[] = []): Promise<number> {
    try {
      return (await (this.via ?? this.pool).query(text, values)).rowCount ?? 0;
    } catch (error) {
      throw this.error(error);
    }
  }

  /** A unique constraint refused the row (SQLSTATE 23505), whether raw or already wrapped. */
  isUnique(error: unknown): boolean {
    const e = error as { code?: string; details?: { code?: string } };
    return e.code === '23505' || e.details?.code === '23505';
  }

  error(error: unknown): VisorError {
    return postgresError(error, this.where);
  }
}
