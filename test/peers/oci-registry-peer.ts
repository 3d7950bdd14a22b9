import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createSign, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, get as httpGet, type Server } from 'node:http';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';
import { ensurePackages, packageVersions } from './debian.js';
import { PeerError, startLog, tail, type PeerDefinition } from './peer.js';

/**
 * A real OCI registry owned by one test run: Debian's `docker-registry` (distribution 2.8), three
 * instances on free loopback ports over one temporary folder each:
 * - `anonymous`: no auth, deletes enabled;
 * - `basic`: htpasswd (bcrypt) auth, the `Basic` challenge;
 * - `token`: the registry's `token` auth, the `Bearer` challenge flow: a token server started
 *   here (node:http) issues RS256 JWTs signed with a key and certificate made by openssl at start,
 *   which the registry verifies against that certificate; the token server checks the user's
 *   password and grants exactly the scope asked for.
 * - `tls`: htpasswd over https, with a certificate for 127.0.0.1 signed by a CA openssl makes
 *   at start (`caFile`).
 * Stopped and removed when the run ends. Tests reach it with requirePeer('oci-registry').
 */
export interface OciRegistryPeer {
  anonymous: string;
  basic: string;
  token: string;
  /** htpasswd auth over TLS, its certificate (for 127.0.0.1) signed by `caFile`'s CA. */
  tls: string;
  caFile: string;
  /** The token server's realm (tests may call it to see what it grants). */
  realm: string;
  user: string;
  password: string;
  baseDir: string;
  pids: number[];
}

const run = promisify(execFile);
const children = new Map<number, ChildProcess>();
let tokenServer: Server | undefined;

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

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** A token server after the Docker token spec: Basic credentials in, a JWT for the asked scope out. */
async function startTokenServer(options: {
  keyPem: string;
  certDer: Buffer;
  service: string;
  issuer: string;
  user: string;
  password: string;
}): Promise<{ server: Server; realm: string }> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const authorization = request.headers.authorization ?? '';
    const [user, password] = Buffer.from(authorization.replace(/^Basic /, ''), 'base64')
      .toString()
      .split(':');
    const anonymous = authorization === '';
    if (!anonymous && (user !== options.user || password !== options.password)) {
      response.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const scopes = url.searchParams.getAll('scope');
    // Anonymous callers get a token with no access: the registry then refuses them with 401.
    const access = anonymous
      ? []
      : scopes.map((scope) => {
          const [type, name, actions] = scope.split(':');
          return { type, name, actions: (actions ?? '').split(',').filter((a) => a !== '') };
        });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [options.certDer.toString('base64')] };
    const claims = {
      iss: options.issuer,
      sub: anonymous ? '' : options.user,
      aud: url.searchParams.get('service') ?? options.service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(input).sign(options.keyPem);
    const token = `${input}.${b64url(signature)}`;
    response
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, realm: `http://127.0.0.1:${port}/token` };
}

/** The registry's answer to GET /v2/ (200 or 401 means it is up), over http or https with `ca`. */
function probe(url: string, ca?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = (url.startsWith('https:') ? httpsGet : httpGet)(`${url}/v2/`, { ca, timeout: 2000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200 || response.statusCode === 401);
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}

async function startRegistry(
  baseDir: string,
  name: string,
  auth: string,
  tls?: { cert: string; key: string; ca: string },
): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const config = join(baseDir, `${name}.yml`);
  const log = join(baseDir, `${name}.log`);
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(baseDir, `${name}-data`)}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      ...(tls ? ['  tls:', `    certificate: ${tls.cert}`, `    key: ${tls.key}`] : []),
      auth,
      '',
    ].join('\n'),
  );
  const out = openSync(log, 'a');
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', out, out], detached: false });
  child.unref();
  const pid = child.pid ?? 0;
  children.set(pid, child);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    if (await probe(url, tls ? await readFile(tls.ca, 'utf8') : undefined)) return { url, pid };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new PeerError('failed', `docker-registry (${name}) did not answer on ${url}`, await startLog(`see ${log}`));
}

const htpasswd = (baseDir: string) =>
  ['auth:', '  htpasswd:', '    realm: visor-test', `    path: ${join(baseDir, 'htpasswd')}`].join('\n');

/** A CA and a server certificate for 127.0.0.1 signed by it, made by openssl in `baseDir`. */
async function makeTls(baseDir: string): Promise<{ cert: string; key: string; ca: string }> {
  const path = (name: string) => join(baseDir, name);
  const subject = (cn: string) => ['-subj', `/CN=${cn}`];
  await run(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path('ca.key')].concat([
      '-out',
      path('ca.crt'),
      '-days',
      '2',
      ...subject('visor-test-registry-ca'),
    ]),
  );
  await run(
    'openssl',
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', path('tls.key')].concat([
      '-out',
      path('tls.csr'),
      ...subject('127.0.0.1'),
    ]),
  );
  await writeFile(path('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await run(
    'openssl',
    ['x509', '-req', '-in', path('tls.csr'), '-CA', path('ca.crt'), '-CAkey', path('ca.key')].concat([
      '-CAcreateserial',
      '-out',
      path('tls.crt'),
      '-days',
      '2',
      '-extfile',
      path('san.ext'),
    ]),
  );
  return { cert: path('tls.crt'), key: path('tls.key'), ca: path('ca.crt') };
}

export const ociRegistryPeer: PeerDefinition<OciRegistryPeer> = {
  title: 'docker-registry (distribution)',
  usedBy: 'the OCI distribution client, the oci sync target and publish (test/wire/oci, test/adapters/oci)',
  async start() {
    if (process.platform !== 'linux') throw new PeerError('unavailable', "needs Linux with Debian's docker-registry");
    if (!existsSync('/usr/bin/docker-registry')) await ensurePackages(['docker-registry']);
    const baseDir = await mkdtemp(join(tmpdir(), 'visor-oci-'));
    const pids: number[] = [];
    try {
      const user = 'visor';
      const password = randomBytes(12).toString('hex');
      await writeFile(join(baseDir, 'htpasswd'), `${user}:${bcrypt.hashSync(password, 5)}\n`);
      const key = join(baseDir, 'token.key');
      const cert = join(baseDir, 'token.crt');
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '2',
        '-subj',
        '/CN=visor-test-token-issuer',
      ]);
      const certDer = Buffer.from(new X509Certificate(await readFile(cert)).raw);
      const service = 'visor-test-registry';
      const issuer = 'visor-test-token-issuer';
      const started = await startTokenServer({
        keyPem: await readFile(key, 'utf8'),
        certDer,
        service,
        issuer,
        user,
        password,
      });
      tokenServer = started.server;
      const anonymous = await startRegistry(baseDir, 'anonymous', '');
      pids.push(anonymous.pid);
      const basic = await startRegistry(baseDir, 'basic', htpasswd(baseDir));
      pids.push(basic.pid);
      const token = await startRegistry(
        baseDir,
        'token',
        [
          'auth:',
          '  token:',
          `    realm: ${started.realm}`,
          `    service: ${service}`,
          `    issuer: ${issuer}`,
          `    rootcertbundle: ${cert}`,
        ].join('\n'),
      );
      pids.push(token.pid);
      const tls = await makeTls(baseDir);
      const secure = await startRegistry(baseDir, 'tls', htpasswd(baseDir), tls);
      pids.push(secure.pid);
      const coordinates: OciRegistryPeer = {
        anonymous: anonymous.url,
        basic: basic.url,
        token: token.url,
        tls: secure.url,
        caFile: tls.ca,
        realm: started.realm,
        user,
        password,
        baseDir,
        pids,
      };
      const { stdout } = await run('docker-registry', ['--version']);
      return { coordinates, version: `${stdout.trim()}; ${await packageVersions(['docker-registry'])}`, reused: false };
    } catch (error) {
      for (const pid of pids) children.get(pid)?.kill('SIGKILL');
      tokenServer?.close();
      await rm(baseDir, { recursive: true, force: true });
      if (error instanceof PeerError) throw error;
      const e = error as { stderr?: string; message: string };
      throw new PeerError('failed', `docker-registry did not start: ${e.message}`, tail(e.stderr ?? '', 20));
    }
  },
  async stop(peer) {
    for (const pid of peer.pids) {
      const child = children.get(pid);
      if (child) child.kill('SIGTERM');
      else {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // Gone already.
        }
      }
    }
    tokenServer?.close();
    await rm(peer.baseDir, { recursive: true, force: true });
  },
};
