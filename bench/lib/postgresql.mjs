// A PostgreSQL 15 of the bench's own (Debian's postgresql-15): initdb in a temporary folder, as
// the postgres user when root (initdb refuses root), on a free loopback port, with the server's
// default durability (fsync and synchronous_commit on: the catalog is measured as deployed).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const bin = '/usr/lib/postgresql/15/bin';
const root = process.getuid?.() === 0;
const pg = (tool, args) =>
  root ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export async function startPostgres() {
  const dir = mkdtempSync(join(tmpdir(), 'visor-bench-pg-'));
  const password = randomBytes(12).toString('hex');
  const pwfile = join(dir, 'pwfile');
  mkdirSync(join(dir, 'socket'));
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (root) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout);
    for (const path of [dir, join(dir, 'socket'), pwfile]) chownSync(path, uid, gid);
  }
  chmodSync(dir, 0o700);
  const user = root ? 'postgres' : (await run('id', ['-un'])).stdout.trim();
  await pg('initdb', [
    '-D',
    join(dir, 'data'),
    '-U',
    user,
    `--pwfile=${pwfile}`,
    '--auth=scram-sha-256',
    '--encoding=UTF8',
    '--locale=C.UTF-8',
  ]);
  const port = await freePort();
  const socket = join(dir, 'socket');
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${socket} -c max_connections=99`;
  await pg('pg_ctl', ['-D', join(dir, 'data'), '-l', join(dir, 'postgres.log'), '-o', options, '-w', 'start']);
  const version = (await pg('postgres', ['--version'])).stdout.trim();
  return {
    url: `postgresql://${user}:${password}@127.0.0.1:${port}/postgres`,
    version,
    stop: async () => {
      await pg('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
