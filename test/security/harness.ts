import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRuntime, type Runtime } from '../../agent/runtime/open-runtime.js';
import { sealingBox, startServer, type RunningServer, type ServeOptions } from '../../agent/serve.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import type { Logger } from '../../core/logging/logger.js';
import { silentLogger } from '../../core/logging/logger.js';

/** A real image service (SQLite catalog, file store, auth on) with whatever config the attack needs. */
export interface SecureServer {
  server: RunningServer;
  runtime: Runtime;
  url: string;
  dataDir: string;
  configFile: string;
  users: { admin: NewCredentials; bob: NewCredentials; carol: NewCredentials };
  close(): Promise<void>;
}

export async function startSecureServer(
  options: {
    yaml?: string;
    logger?: Logger;
    serve?: ServeOptions;
    dataDir?: string;
    users?: SecureServer['users'];
  } = {},
): Promise<SecureServer> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'visor-sec-')));
  const configFile = join(dataDir, 'visor.yaml');
  await writeFile(
    configFile,
    [
      `dataDir: ${dataDir}`,
      'logging: { level: error }',
      options.yaml ?? 'stores:\n  local: { type: file }\nserver:\n  host: 127.0.0.1',
      '',
    ].join('\n'),
  );
  const runtime = await openRuntime({ configFile, env: {}, logger: options.logger ?? silentLogger });
  const server = await startServer(runtime, { port: 0, ...options.serve });
  const box = await sealingBox(runtime);
  // A second server over the same data folder shares the first one's users.
  const users = options.users ?? {
    admin: await addUser(server.catalog.users, box, 'admin', true),
    bob: await addUser(server.catalog.users, box, 'bob', false),
    carol: await addUser(server.catalog.users, box, 'carol', false),
  };
  return {
    server,
    runtime,
    url: server.url,
    dataDir,
    configFile,
    users,
    close: async () => {
      await server.close(1000);
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
