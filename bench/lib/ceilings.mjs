// The machine's own limits, run as contestants beside visor and Glance: nginx serving a file with
// sendfile, and a minimal Node server (each in a process of its own, on loopback) that serves a
// file from a FileHandle in 4 MiB blocks read into two reused buffers and takes a PUT into a file
// with fsync. Every figure of visor can then be read against what this machine allows.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { sleep } from './util.mjs';

const run = promisify(execFile);

async function freePort() {
  const probe = createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

const stopper = (child) => () =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });

/**
 * Debian's nginx (nginx-light) with its own config and prefix in `dir`, one worker, no master,
 * sendfile on, no access log; serves `file` as /file. Runs as root in the foreground (`daemon off`).
 */
export async function startNginx(dir, file) {
  const prefix = join(dir, 'nginx');
  for (const sub of ['www', 'logs', 'tmp']) mkdirSync(join(prefix, sub), { recursive: true });
  symlinkSync(file, join(prefix, 'www', 'file'));
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
daemon off;
master_process off;
error_log ${prefix}/logs/error.log;
pid ${prefix}/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${prefix}/tmp;
  proxy_temp_path ${prefix}/tmp;
  fastcgi_temp_path ${prefix}/tmp;
  uwsgi_temp_path ${prefix}/tmp;
  scgi_temp_path ${prefix}/tmp;
  server { listen 127.0.0.1:${port}; root ${prefix}/www; default_type application/octet-stream; }
}
`,
  );
  const child = spawn('nginx', ['-p', prefix, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
    const ok = await fetch(`${url}/file`, { method: 'HEAD' }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await sleep(100);
  }
  // nginx -v prints its version on stderr.
  const noVersion = (e) => ({ stderr: e.stderr ?? '' });
  const { stderr: version } = await run('nginx', ['-v'], { encoding: 'utf8' }).catch(noVersion);
  return { url, pid: child.pid, version: version.trim(), stop: stopper(child) };
}

/**
 * The minimal Node server: GET /file (FileHandle, 4 MiB blocks, two reused buffers), PUT /upload
 * (pipe to a file, fsync, 201).
 */
const bareServer = `
import http from 'node:http';
import { createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
const [file, uploadDir] = process.argv.slice(2);
const BLOCK = 4 * 1024 * 1024;
const write = (res, buf) => new Promise((resolve, reject) => res.write(buf, (e) => (e ? reject(e) : resolve())));
let n = 0;
const server = http.createServer(async (req, res) => {
  try {
    if (req.method === 'GET' && req.url === '/file') {
      const handle = await open(file);
      const { size } = await handle.stat();
      res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
      const buffers = [Buffer.allocUnsafeSlow(BLOCK), Buffer.allocUnsafeSlow(BLOCK)];
      let position = 0, i = 0, pending;
      while (position < size) {
        const buffer = buffers[i];
        i ^= 1;
        const { bytesRead } = await handle.read(buffer, 0, Math.min(BLOCK, size - position), position);
        if (bytesRead === 0) throw new Error('short file');
        position += bytesRead;
        await pending;
        pending = write(res, bytesRead === BLOCK ? buffer : buffer.subarray(0, bytesRead));
      }
      await pending;
      await handle.close();
      res.end();
    } else if (req.method === 'PUT' && req.url === '/upload') {
      const path = uploadDir + '/upload-' + n++;
      await pipeline(req, createWriteStream(path));
      const handle = await open(path, 'r');
      await handle.sync();
      await handle.close();
      res.writeHead(201, { 'content-length': 0 }).end();
      await rm(path);
    } else res.writeHead(404).end();
  } catch (error) {
    res.destroy(error);
  }
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

export async function startBareNode(dir, file) {
  const script = join(dir, 'bare-node-server.mjs');
  const uploads = join(dir, 'bare-uploads');
  mkdirSync(uploads, { recursive: true });
  writeFileSync(script, bareServer);
  const child = spawn(process.execPath, [script, file, uploads], { stdio: ['ignore', 'pipe', 'inherit'] });
  let port;
  for await (const line of createInterface({ input: child.stdout })) {
    const match = /^listening (\d+)$/.exec(line);
    if (match) {
      port = Number(match[1]);
      break;
    }
  }
  if (!port) throw new Error('the bare Node server did not start');
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, stop: stopper(child) };
}

/** `curl -o /dev/null` of a URL (a download measured at the server). */
export async function curlGet(url, headers = {}) {
  const headerArgs = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  await run('curl', ['-sS', '-f', '-o', '/dev/null', ...headerArgs, url]);
}

/** `curl -T file` as a PUT. */
export async function curlPut(url, file) {
  await run('curl', ['-sS', '-f', '-T', file, url]);
}
