import { z } from 'zod';
import { definePlugin } from '../../registry/plugin.js';

export const postgresqlCatalogOptions = z.strictObject({
  url: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL, e.g. postgresql://visor@db1:5432/visor')
    .describe('connection URL; sslmode, sslrootcert and host (a unix socket folder) may be given as parameters'),
  password: z.string().min(1).optional().describe('the password, when it is not in the URL'),
  schema: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a PostgreSQL schema name (lower-case letters, digits, _)')
    .default('visor'),
  poolSize: z.number().int().min(1).max(1000).default(10).describe('connections at most, per process'),
  connectTimeoutSeconds: z.number().positive().max(3600).default(10),
  statementTimeoutSeconds: z.number().positive().max(86_400).default(30),
  idleTimeoutSeconds: z.number().positive().max(86_400).default(30),
  migrations: z
    .enum(['auto', 'manual'])
    .default('auto')
    .describe('auto: apply pending schema migrations at start; manual: only `visor catalog migrate` does'),
});

export const postgresqlCatalogPlugin = definePlugin({
  id: 'postgresql',
  kind: 'catalog',
  description: 'Central catalog in PostgreSQL, shared by several API servers and agents',
  optionsSchema: postgresqlCatalogOptions,
  create: async (options, context) => {
    context.secrets.add(options.password);
    context.secrets.add(passwordIn(options.url));
    // Loaded on demand: SQLite users need not load the driver.
    const { PostgresCatalog } = await import('./postgresql-catalog.js');
    return new PostgresCatalog({
      url: options.url,
      password: options.password,
      schema: options.schema,
      poolSize: options.poolSize,
      connectTimeoutMs: options.connectTimeoutSeconds * 1000,
      statementTimeoutMs: options.statementTimeoutSeconds * 1000,
      idleTimeoutMs: options.idleTimeoutSeconds * 1000,
      migrations: options.migrations,
      logger: context.logger,
    });
  },
});

function passwordIn(url: string): string | undefined {
  try {
    return decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    return undefined;
  }
}
