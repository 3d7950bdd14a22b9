import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensurePackages, packageVersions } from './debian.js';
import { PeerError, startLog, type PeerDefinition } from './peer.js';

/**
 * A real PostgreSQL 15 (Debian's postgresql-15) owned by one test run: `initdb` in a temporary
 * folder and `pg_ctl start` on a free loopback port, as the `postgres` user when the run is root
 * (initdb refuses root), password authentication (scram-sha-256) for every connection, stopped
 * and removed when the run ends. Tests reach it with requirePeer('postgresql'); helpers for a
 * database per test file: postgresql.ts.
 */
export interface PostgresPeer {
  host: string;
  port: number;
  user: string;
  password: string;
  /** The maintenance database, where test databases are created from. */
  database: string;
  /** postgresql://user:password@host:port/database */
  url: string;
  /** The folder of its unix socket (`?host=<dir>&port=<port>` in a URL). */
  socketDir: string;
  baseDir: string;
}

const run = promisify(execFile);
const binDir = '/usr/lib/postgresql/15/bin';
const asRoot = () => process.getuid?.() === 0;

/** Runs a PostgreSQL binary as the `postgres` user when we are root, else as ourselves. */
function pgRun(bin: string, args: string[], timeout = 120_000) {
  const command = asRoot()
    ? ['runuser', '-u', 'postgres', '--', join(binDir, bin), ...args]
    : [join(binDir, bin), ...args];
  return run(command[0]!, command.slice(1), { timeout, maxBuffer: 4 * 1024 * 1024 });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts or stops the server of a peer's folder (`start` waits until it accepts connections).
 * For a PostgreSQL of one test's own (postgresPeer.start() in the test): never the shared one.
 */
export async function pgCtl(baseDir: string, action: 'start' | 'stop'): Promise<void> {
  const data = join(baseDir, 'data');
  const log = join(baseDir, 'postgres.log');
  if (action === 'start') await pgRun('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '120', 'start']);
  else await pgRun('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'], 60_000);
}

export const postgresPeer: PeerDefinition<PostgresPeer> = {
  title: 'PostgreSQL 15',
  usedBy: 'the postgresql catalog (contract, migrations, bad input), API replicas, agents on one catalog, catalog copy',
  async start() {
    if (process.platform !== 'linux') throw new PeerError('unavailable', "needs Linux with Debian's postgresql-15");
    if (!existsSync(join(binDir, 'initdb'))) await ensurePackages(['postgresql-15']);
    if (
      asRoot() &&
      !(await run('id', ['-u', 'postgres']).then(
        () => true,
        () => false,
      ))
    ) {
      throw new PeerError('failed', 'postgresql-15 is installed but there is no postgres user to run it as');
    }
    const baseDir = await mkdtemp(join(tmpdir(), 'visor-pg-'));
    const data = join(baseDir, 'data');
    const socketDir = join(baseDir, 'socket');
    const log = join(baseDir, 'postgres.log');
    const password = randomBytes(12).toString('hex');
    const pwfile = join(baseDir, 'pwfile');
    await mkdir(socketDir);
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    if (asRoot()) {
      const { stdout } = await run('id', ['-u', 'postgres']);
      const { stdout: gid } = await run('id', ['-g', 'postgres']);
      for (const path of [baseDir, socketDir, pwfile]) await chown(path, Number(stdout), Number(gid));
    }
    await chmod(baseDir, 0o700);
    const user = asRoot() ? 'postgres' : userInfo().username;
    try {
      await pgRun('initdb', [
        '-D',
        data,
        '-U',
        user,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C.UTF-8',
      ]);
      await rm(pwfile, { force: true });
      const port = await freePort();
      // In postgresql.conf rather than on the command line, so that a plain `pg_ctl start` (see
      // pgCtl) brings the same server back. Durability settings off: a test cluster is thrown away
      // after the run, and CPU is scarce.
      const settings = [
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${socketDir}'`,
        'max_connections = 300',
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'shared_buffers = 64MB',
      ];
      await appendFile(join(data, 'postgresql.conf'), `\n# visor test peer\n${settings.join('\n')}\n`);
      await pgCtl(baseDir, 'start');
      const { stdout: version } = await pgRun('postgres', ['--version']);
      const coordinates: PostgresPeer = {
        host: '127.0.0.1',
        port,
        user,
        password,
        database: 'postgres',
        url: `postgresql://${user}:${password}@127.0.0.1:${port}/postgres`,
        socketDir,
        baseDir,
      };
      return { coordinates, version: `${version.trim()}; ${await packageVersions(['postgresql-15'])}`, reused: false };
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      const output = `${e.stdout ?? ''}\n${e.stderr ?? e.message}\nsee ${log}`;
      const failure = new PeerError(
        'failed',
        `PostgreSQL did not start: ${e.message.split('\n')[0]}`,
        await startLog(output),
      );
      await pgRun('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']).catch(() => undefined);
      await rm(baseDir, { recursive: true, force: true });
      throw failure;
    }
  },
  async stop(peer) {
    await pgRun('pg_ctl', ['-D', join(peer.baseDir, 'data'), '-m', 'fast', '-w', 'stop'], 60_000).catch(
      () => undefined,
    );
    await rm(peer.baseDir, { recursive: true, force: true });
  },
};
