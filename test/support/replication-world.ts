import { digestsRecorded } from './digests.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { VisorClient } from '../../agent/client/client.js';
import { AgentDaemon } from '../../agent/daemon.js';
import type { Caller } from '../../agent/service/access.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { SecretBox } from '../../core/auth/secret-box.js';
import { memoryPlugin } from '../../core/iaas/memory/index.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';

export type WorldUser = 'admin' | 'bob' | 'carol';

/**
 * A running agent (API, dashboard and scheduler in one server, as `visor agent` runs) with two
 * clouds on the memory adapter, users admin, bob and carol, and images: public ones, one private
 * to bob and one private to carol. Nothing is synced until a test asks.
 */
export interface ReplicationWorld {
  agent: AgentDaemon;
  url: string;
  dir: string;
  users: Record<WorldUser, NewCredentials & { id: string }>;
  images: { public: Image[]; bobs: Image; carols: Image };
  client(user: WorldUser): VisorClient;
  close(): Promise<void>;
}

export async function replicationWorld(options: { publicImages?: number } = {}): Promise<ReplicationWorld> {
  const dir = await mkdtemp(join(tmpdir(), 'visor-replication-'));
  const cloud = `memory-${randomUUID().slice(0, 8)}`;
  const config = join(dir, 'visor.yaml');
  await writeFile(
    config,
    [
      `dataDir: ${dir}`,
      'server: { host: 127.0.0.1, auth: { enabled: true } }',
      // Runs happen when the tests ask (catalog changes would start some: test/agent/change-triggers.test.ts).
      'clouds:',
      `  east: { adapter: memory, options: { cloud: ${cloud}, project: east },`,
      '          sync: { schedule: "0 3 * * *", triggers: { onChange: false } } }',
      `  west: { adapter: memory, options: { cloud: ${cloud}, project: west },`,
      '          sync: { selector: { names: ["ubuntu-*"] }, triggers: { onChange: false } } }',
    ].join('\n'),
  );
  const agent = new AgentDaemon({
    configFile: config,
    env: {},
    logger: silentLogger,
    plugins: [memoryPlugin],
    port: 0,
  });
  await agent.start();
  const server = agent.server;
  // The default server.auth.keyFile, in the data folder: the key the agent seals secrets with.
  const box = await SecretBox.fromFile(join(dir, 'credentials.key'));
  const users = {} as ReplicationWorld['users'];
  for (const [name, admin] of [
    ['admin', true],
    ['bob', false],
    ['carol', false],
  ] as const) {
    const creds = await addUser(server.catalog.users, box, name, admin);
    users[name] = { ...creds, id: (await server.catalog.users.findByName(name))!.id };
  }
  const add = async (caller: Caller, draft: Record<string, unknown>) => {
    const image = await server.service.register(caller, { architecture: 'x86_64', ...draft });
    const bytes = randomBytes(64 * 1024);
    await server.service.upload(caller, image.id, Readable.from([bytes]), { size: bytes.length });
    // Settled before anything syncs: recording the deferred digests later would show the
    // synced copies as pending an update.
    return digestsRecorded(server.catalog, image.id);
  };
  const admin: Caller = { id: users.admin.id, name: 'admin', admin: true };
  const names = ['ubuntu-24.04', 'debian-12', 'alma-9', 'ubuntu-22.04', 'fedora-41'];
  const publicImages: Image[] = [];
  for (let i = 0; i < (options.publicImages ?? names.length); i++) {
    const name = names[i] ?? `image-${String(i).padStart(4, '0')}`;
    publicImages.push(await add(admin, { name, access: 'public', tags: i % 2 ? ['lts'] : [] }));
  }
  const bobs = await add({ id: users.bob.id, name: 'bob', admin: false }, { name: 'bob-secret', access: 'private' });
  const carols = await add(
    { id: users.carol.id, name: 'carol', admin: false },
    { name: 'carol-secret', access: 'private' },
  );
  return {
    agent,
    url: agent.url,
    dir,
    users,
    images: { public: publicImages, bobs, carols },
    client: (user) =>
      new VisorClient({
        url: agent.url,
        accessKey: users[user].accessKey,
        secretKey: users[user].secretKey,
        source: 'test',
      }),
    close: async () => {
      await agent.stop(1000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
