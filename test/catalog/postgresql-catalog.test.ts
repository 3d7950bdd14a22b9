import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { PostgresCatalog } from '../../core/catalog/postgresql/postgresql-catalog.js';
import type { Catalog } from '../../core/catalog/port.js';
import { catalogContract } from '../../core/testing/catalog-contract.js';
import { requirePeer } from '../peers/index.js';
import { createTestDatabase, databaseUrl, dropTestDatabase } from '../peers/postgresql.js';

/** The catalog contract against a real PostgreSQL 15 that the run starts (test/peers/postgresql-peer.ts). */
const { peer, skip } = await requirePeer('postgresql');
let database = '';
beforeAll(async () => {
  if (peer) database = await createTestDatabase(peer, 'contract');
}, 60_000);
afterAll(async () => {
  if (peer && database) await dropTestDatabase(peer, database);
});

catalogContract(
  'postgresql',
  async () => {
    // A schema per catalog: every `open` gives an empty one, `reopen` the same one again.
    const schemas = new Map<Catalog, string>();
    const made: string[] = [];
    const openIn = async (schema: string) => {
      const catalog = new PostgresCatalog({ url: databaseUrl(peer!, database), schema, poolSize: 4 });
      await catalog.init();
      schemas.set(catalog, schema);
      return catalog;
    };
    return {
      open: () => {
        const schema = `c_${randomBytes(5).toString('hex')}`;
        made.push(schema);
        return openIn(schema);
      },
      reopen: (catalog) => openIn(schemas.get(catalog)!),
      cleanup: async () => {
        const pg = (await import('pg')).default;
        const client = new pg.Client({ connectionString: databaseUrl(peer!, database) });
        await client.connect();
        try {
          for (const schema of made) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        } finally {
          await client.end();
        }
      },
    };
  },
  skip,
);
