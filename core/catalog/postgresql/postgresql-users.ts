import type { User, UserRepository } from '../port.js';
import { userExists, userNotFound, validateUser } from '../users.js';
import type { Sql } from './postgresql-sql.js';

export class PostgresUsers implements UserRepository {
  constructor(private readonly sql: Sql) {}

  async create(user: User): Promise<User> {
    const valid = validateUser(user);
    const statement = `INSERT INTO ${this.sql.t('users')} (name, id, access_key, body) VALUES ($1, $2, $3, $4)`;
    try {
      await this.sql.query(statement, [valid.name, valid.id, valid.accessKey, JSON.stringify(valid)]);
    } catch (error) {
      // Name, id and access key are each unique: any of them taken is the same conflict.
      if (this.sql.isUnique(error)) throw userExists(valid);
      throw error;
    }
    return valid;
  }

  findByName(name: string): Promise<User | undefined> {
    return this.one('name', name);
  }

  findById(id: string): Promise<User | undefined> {
    return this.one('id', id);
  }

  findByAccessKey(accessKey: string): Promise<User | undefined> {
    return this.one('access_key', accessKey);
  }

  async list(): Promise<User[]> {
    const rows = await this.sql.query<{ body: string }>(`SELECT body FROM ${this.sql.t('users')} ORDER BY name`);
    return rows.map((r) => JSON.parse(r.body) as User);
  }

  async delete(name: string): Promise<void> {
    if ((await this.sql.execute(`DELETE FROM ${this.sql.t('users')} WHERE name = $1`, [name])) === 0)
      throw userNotFound(name);
  }

  private async one(column: 'name' | 'id' | 'access_key', value: string): Promise<User | undefined> {
    const rows = await this.sql.query<{ body: string }>(
      `SELECT body FROM ${this.sql.t('users')} WHERE ${column} = $1`,
      [value],
    );
    return rows[0] ? (JSON.parse(rows[0].body) as User) : undefined;
  }
}
