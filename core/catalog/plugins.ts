import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { definePlugin } from '../registry/plugin.js';
import { SqliteCatalog } from './sqlite/sqlite-catalog.js';

export { postgresqlCatalogPlugin } from './postgresql/plugin.js';

export const sqliteCatalogPlugin = definePlugin({
  id: 'sqlite',
  kind: 'catalog',
  description: 'Embedded catalog in one SQLite file in the data directory (the default)',
  optionsSchema: z.strictObject({
    path: z.string().min(1).default('catalog.db').describe('database file, relative to the data directory'),
  }),
  create: (options, context) =>
    new SqliteCatalog({ path: isAbsolute(options.path) ? options.path : resolve(context.dataDir, options.path) }),
});

export const mongodbCatalogPlugin = definePlugin({
  id: 'mongodb',
  kind: 'catalog',
  description: 'Central catalog in MongoDB (a replica set for HA), shared by several agents',
  optionsSchema: z.strictObject({
    uri: z.string().regex(/^mongodb(\+srv)?:\/\//, 'must be a mongodb:// or mongodb+srv:// URI'),
    database: z.string().min(1).default('visor'),
    collectionPrefix: z
      .string()
      .regex(/^[A-Za-z0-9_]*$/)
      .default(''),
  }),
  create: async (options, context) => {
    context.secrets.add(
      decodeURIComponent(new URL(options.uri.replace(/^mongodb(\+srv)?:/, 'http:')).password) || undefined,
    );
    // Loaded on demand: the driver costs ~150 ms of start-up that SQLite users should not pay.
    const { MongoCatalog } = await import('./mongodb/mongodb-catalog.js');
    return new MongoCatalog({
      uri: options.uri,
      database: options.database,
      collectionPrefix: options.collectionPrefix,
    });
  },
});
