import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { startServer, sealingBox, type RunningServer } from '../../agent/serve.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { VisorClient } from '../../agent/client/client.js';
import { silentLogger } from '../../core/logging/logger.js';

export interface TestServer {
  server: RunningServer;
  url: string;
  dataDir: string;
  users: Record<'admin' | 'bob' | 'carol', NewCredentials>;
  client(user: 'admin' | 'bob' | 'carol' | NewCredentials): VisorClient;
  close(): Promise<void>;
}

/** A real image service on a random loopback port, with an admin and two plain users. */
export async function startTestServer(options: { auth?: boolean; extraYaml?: string } = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'visor-api-'));
  const config = join(dataDir, 'visor.yaml');
  await writeFile(
    config,
    [
      `dataDir: ${dataDir}`,
      'stores:',
      '  local: { type: file }',
      '  web: { type: http, options: { allowPrivateNetworks: true } }',
      'defaultStore: local',
      'server:',
      '  host: 127.0.0.1',
      `  auth: { enabled: ${options.auth !== false} }`,
      options.extraYaml ?? '',
    ].join('\n'),
  );
  const runtime = await openRuntime({ configFile: config, env: {}, logger: silentLogger });
  const server = await startServer(runtime, { port: 0 });
  const box = await sealingBox(runtime);
  const users = {
    admin: await addUser(server.catalog.users, box, 'admin', true),
    bob: await addUser(server.catalog.users, box, 'bob', false),
    carol: await addUser(server.catalog.users, box, 'carol', false),
  };
  return {
    server,
    url: server.url,
    dataDir,
    users,
    client: (user) => {
      const creds = typeof user === 'string' ? users[user] : user;
      return new VisorClient({
        url: server.url,
        accessKey: creds.accessKey,
        secretKey: creds.secretKey,
        source: 'test',
      });
    },
    close: async () => {
      await server.close(1000);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
