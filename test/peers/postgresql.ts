import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { PostgresPeer } from './postgresql-peer.js';

/** Databases on the PostgreSQL peer (postgresql-peer.ts; tests get it with requirePeer('postgresql')). */

export type { PostgresPeer } from './postgresql-peer.js';

/** The peer's URL for another database (and optionally another password). */
export function databaseUrl(peer: PostgresPeer, database: string, password = peer.password): string {
  return `postgresql://${peer.user}:${encodeURIComponent(password)}@${peer.host}:${peer.port}/${database}`;
}

/** Runs statements on the peer's maintenance database. */
export async function adminQuery(peer: PostgresPeer, sql: string, database = peer.database): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: databaseUrl(peer, database) });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A new, empty database for one test file: `visor_<label>_<random>`. */
export async function createTestDatabase(peer: PostgresPeer, label: string): Promise<string> {
  const name = `visor_${label
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '_')
    .slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  await adminQuery(peer, `CREATE DATABASE ${name} ENCODING 'UTF8' TEMPLATE template0`);
  return name;
}

/** Drops a test database, ending the connections a killed process may have left. */
export async function dropTestDatabase(peer: PostgresPeer, name: string): Promise<void> {
  await adminQuery(peer, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
