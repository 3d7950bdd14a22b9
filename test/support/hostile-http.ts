import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { sealingBox, startServer, type RunningServer } from '../../agent/serve.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { CONTENT_HASH_HEADER, EMPTY_SHA256, signRequest, STREAMING_PAYLOAD } from '../../core/auth/signing.js';
import { silentLogger } from '../../core/logging/logger.js';
import { rawRequest, type Credentials } from './raw-http.js';

/**
 * Tools for hostile HTTP: a real image service (file store, SQLite, auth on) whose upload idle
 * timeout tests can shorten, raw sockets for what no HTTP client would send, and a view of
 * everything the service keeps (catalog and store) to prove a refusal kept nothing.
 */
export interface HostileServer {
  server: RunningServer;
  url: string;
  dataDir: string;
  users: { admin: NewCredentials; bob: NewCredentials };
  close(): Promise<void>;
}

export async function startHostileServer(options: { uploadIdleMs?: number } = {}): Promise<HostileServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'visor-hostile-'));
  const config = join(dataDir, 'visor.yaml');
  await writeFile(
    config,
    `dataDir: ${dataDir}\nlogging: { level: error }\nstores:\n  local: { type: file }\nserver:\n  host: 127.0.0.1\n`,
  );
  const runtime = await openRuntime({ configFile: config, env: {}, logger: silentLogger });
  const idle = options.uploadIdleMs !== undefined ? { uploadIdleMs: options.uploadIdleMs } : {};
  const server = await startServer(runtime, { port: 0, ...idle });
  const box = await sealingBox(runtime);
  const users = {
    admin: await addUser(server.catalog.users, box, 'admin', true),
    bob: await addUser(server.catalog.users, box, 'bob', false),
  };
  return {
    server,
    url: server.url,
    dataDir,
    users,
    close: async () => {
      await server.close(1000);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Every image record (id, status, revision) and every stored file: equal before and after a refusal means nothing was
 * kept.
 */
export async function kept(t: HostileServer): Promise<{ images: string[]; files: string[] }> {
  // An accepted upload's md5/sha512 are recorded after it answers, which bumps its revision: wait
  // for every image to settle first, so that a snapshot never races a digest still being recorded.
  type Listed = { _id: string; status: string; revision: number; checksums_pending?: string[] };
  let listed: Listed[] = [];
  for (let attempt = 0; ; attempt++) {
    const r = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: [['limit', '10000']],
      as: t.users.admin,
    });
    if (r.status !== 200) throw new Error(`listing failed: ${r.status} ${r.body.toString()}`);
    listed = (r.json() as { images: Listed[] }).images;
    const pending = listed.filter((i) => i.checksums_pending !== undefined);
    if (pending.length === 0) break;
    if (attempt >= 400) throw new Error(`digests still pending after 10 s: ${pending.map((i) => i._id).join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const images = listed.map((i) => `${i._id}:${i.status}:${i.revision}`).sort();
  const files = (await readdir(join(t.dataDir, 'images')).catch(() => [] as string[])).sort();
  return { images, files };
}

/** A signed request that must succeed: the server is still up and answering. */
export async function healthy(t: HostileServer): Promise<number> {
  const started = Date.now();
  const r = await rawRequest(t.url, { method: 'GET', path: '/images', query: [['limit', '5']], as: t.users.bob });
  if (r.status !== 200) throw new Error(`the server is not healthy: ${r.status} ${r.body.toString().slice(0, 200)}`);
  return Date.now() - started;
}

/**
 * Signed request headers as an HTTP/1.1 head (status line to blank line), for a raw socket. The
 * body's hash defaults to the streamed-upload mode for chunked bodies (the digest would follow in
 * a trailer) and to the empty body's otherwise; pass the real one where the body must be taken.
 */
export function signedHead(
  url: string,
  creds: Credentials,
  method: string,
  path: string,
  headers: Record<string, string>,
  contentHash = /chunked/.test(headers['transfer-encoding'] ?? '') ? STREAMING_PAYLOAD : EMPTY_SHA256,
): string {
  const signed = signRequest(creds.accessKey, creds.secretKey, {
    method,
    path,
    query: [],
    headers: { [CONTENT_HASH_HEADER]: contentHash, ...headers },
  });
  return [
    `${method} ${path} HTTP/1.1`,
    `host: ${new URL(url).host}`,
    ...Object.entries(signed).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
}

export interface RawExchange {
  /** Everything the server sent. */
  text: string;
  /** The status of the first response, 0 when none came. */
  status: number;
  /** The server closed (or reset) the connection before `waitMs`. */
  closedByServer: boolean;
  ms: number;
}

/**
 * A raw connection: writes `data` (then whatever `more` writes), reads until the server closes it or `waitMs` passes.
 */
export function rawExchange(
  url: string,
  data: Buffer | string,
  options: { waitMs?: number; more?: (socket: Socket) => void } = {},
): Promise<RawExchange> {
  const { hostname, port } = new URL(url);
  const started = Date.now();
  return new Promise((resolve) => {
    let text = '';
    let done = false;
    const socket = connect(Number(port), hostname, () => {
      socket.write(data);
      options.more?.(socket);
    });
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ text, status: status ? Number(status[1]) : 0, closedByServer, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), options.waitMs ?? 5000);
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}
