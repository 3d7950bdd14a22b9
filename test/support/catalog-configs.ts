import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { sealingBox } from '../../agent/serve.js';
import type { SecretBox } from '../../core/auth/secret-box.js';
import type { Catalog } from '../../core/catalog/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { createTestDatabase, databaseUrl, dropTestDatabase, type PostgresPeer } from '../peers/postgresql.js';

/**
 * Config files for a SQLite and a PostgreSQL catalog in one temporary folder, and a way to open
 * either as the CLI would (one runtime, its secret box): what the catalog backup and copy suites
 * both stand on. The PostgreSQL password travels in the environment, never in the file.
 */
export interface CatalogConfigs {
  readonly dir: string;
  env(): Record<string, string>;
  sqlite(name: string): Promise<string>;
  /** A config on the test database, in its own schema (a fresh one unless named). */
  postgres(name: string, schema?: string): Promise<string>;
  withCatalog<T>(config: string, fn: (catalog: Catalog, box: SecretBox) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export async function catalogConfigs(label: string, peer: PostgresPeer | undefined): Promise<CatalogConfigs> {
  const dir = await mkdtemp(join(tmpdir(), `visor-${label}-test-`));
  const database = peer ? await createTestDatabase(peer, label) : '';
  const env = (): Record<string, string> => (peer ? { VISOR_PG_PASSWORD: peer.password } : {});
  const write = async (name: string, catalog: string) => {
    const file = join(dir, `${name}.yaml`);
    await writeFile(
      file,
      `dataDir: ${join(dir, name)}\nlogging: { level: error }\n${catalog}stores: { local: { type: file } }\n`,
    );
    return file;
  };
  return {
    dir,
    env,
    sqlite: (name) => write(name, ''),
    postgres: (name, schema = `${label}_${randomBytes(4).toString('hex')}`) => {
      if (!peer) throw new Error('no PostgreSQL peer: the test should have been skipped');
      const url = databaseUrl(peer, database).replace(`:${peer.password}@`, '@');
      const options = `{ url: "${url}", password: "\${VISOR_PG_PASSWORD}", schema: ${schema} }`;
      return write(name, `catalog: { type: postgresql, options: ${options} }\n`);
    },
    async withCatalog(config, fn) {
      const runtime = await openRuntime({ configFile: config, env: env(), logger: silentLogger });
      try {
        return await fn(await runtime.catalog(), await sealingBox(runtime));
      } finally {
        await runtime.close();
      }
    },
    async close() {
      if (peer && database) await dropTestDatabase(peer, database);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
