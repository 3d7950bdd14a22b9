import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { sealingBox, startServer } from '../../agent/serve.js';
import { addUser } from '../../agent/service/users.js';
import { silentLogger } from '../../core/logging/logger.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';

/**
 * Another local user must not read the catalog (private metadata, sealed secrets), the key
 * that unseals them, or the image files: the data folder is 0700 and its files 0600 whatever
 * the umask — here the most permissive one, 000 — and looser ones an older version left are
 * tightened on start.
 */
const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('the data folder is private whatever the umask', () => {
  let root: string;
  let previous: number;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'visor-modes-'));
    previous = process.umask(0o000);
  });
  afterAll(async () => {
    process.umask(previous);
    await rm(root, { recursive: true, force: true });
  });

  let users = 0;
  const serveIn = async (dataDir: string) => {
    const file = join(root, `${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, `dataDir: ${dataDir}\nstores:\n  local: { type: file }\nserver: { host: 127.0.0.1 }\n`);
    const runtime = await openRuntime({ configFile: file, env: {}, logger: silentLogger });
    const server = await startServer(runtime, { port: 0 });
    const admin = await addUser(server.catalog.users, await sealingBox(runtime), `admin${users++}`, true);
    const client = new VisorClient({
      url: server.url,
      accessKey: admin.accessKey,
      secretKey: admin.secretKey,
      source: 'test',
    });
    const data = Buffer.alloc(4096, 1);
    await client.add(
      { name: 'private-bits', architecture: 'x86_64' },
      { stream: Readable.from([data]), size: data.length },
    );
    return server;
  };

  it('creates the folder 0700 and the catalog (-wal, -shm), key and image files 0600 under umask 000', async () => {
    const dataDir = join(root, 'fresh', 'data');
    const server = await serveIn(dataDir);
    try {
      expect(await mode(dataDir)).toBe(0o700);
      for (const name of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm', 'credentials.key'])
        expect(await mode(join(dataDir, name)), name).toBe(0o600);
      expect(await mode(join(dataDir, 'images'))).toBe(0o700);
      const images = (await readdir(join(dataDir, 'images'))).filter((f) => !f.startsWith('.'));
      expect(images).toHaveLength(1);
      expect(await mode(join(dataDir, 'images', images[0]!))).toBe(0o600);
      // Nothing in the folder is readable by group or others.
      for (const name of await readdir(dataDir)) expect((await mode(join(dataDir, name))) & 0o077, name).toBe(0);
    } finally {
      await server.close(1000);
    }
  });

  it('tightens a data folder and files an older version left 0755/0644', async () => {
    const dataDir = join(root, 'legacy');
    const first = await serveIn(dataDir);
    await first.close(1000);
    await chmod(dataDir, 0o755);
    for (const name of ['catalog.db', 'credentials.key']) await chmod(join(dataDir, name), 0o644);
    await chmod(join(dataDir, 'images'), 0o755);
    const again = await serveIn(dataDir);
    try {
      expect(await mode(dataDir)).toBe(0o700);
      for (const name of ['catalog.db', 'credentials.key']) expect(await mode(join(dataDir, name)), name).toBe(0o600);
      expect(await mode(join(dataDir, 'images'))).toBe(0o700);
    } finally {
      await again.close(1000);
    }
  });

  it('never closes a folder it did not make: a shared /tmp-like one, the one a catalog file is put in', async () => {
    // Running as root, a catalog at /tmp/x.db once made /tmp 0700 (and PostgreSQL, and every other
    // user of /tmp, locked out of it).
    const shared = join(root, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o1777);
    const elsewhere = join(root, 'var-lib');
    await mkdir(elsewhere);
    await chmod(elsewhere, 0o755);
    for (const path of [join(shared, 'catalog.db'), join(elsewhere, 'catalog.db')]) {
      const catalog = new SqliteCatalog({ path });
      await catalog.init();
      await catalog.close();
      expect(await mode(path)).toBe(0o600);
    }
    expect((await stat(shared)).mode & 0o7777).toBe(0o1777);
    expect(await mode(elsewhere)).toBe(0o755);
    // A data folder placed in the shared one is still made private; the shared one stays open.
    const dataDir = join(shared, 'data');
    const server = await serveIn(dataDir);
    try {
      expect(await mode(dataDir)).toBe(0o700);
      expect((await stat(shared)).mode & 0o7777).toBe(0o1777);
    } finally {
      await server.close(1000);
    }
    // Pointed at the shared folder itself, visor does not close it either.
    const catalog = new SqliteCatalog({ path: join(shared, 'nested', 'catalog.db') });
    await catalog.init();
    await catalog.close();
    expect(await mode(join(shared, 'nested'))).toBe(0o700);
  });

  it('the systemd example sets UMask and StateDirectoryMode', async () => {
    const { readFile } = await import('node:fs/promises');
    const unit = await readFile(new URL('../../examples/systemd/visor-agent.service', import.meta.url), 'utf8');
    expect(unit).toMatch(/^UMask=0077$/m);
    expect(unit).toMatch(/^StateDirectoryMode=0700$/m);
  });
});
