import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import { loadClientSettings } from '../../agent/client/credentials.js';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { startServer } from '../../agent/serve.js';
import { silentLogger } from '../../core/logging/logger.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * TLS on `visor serve`: a CA and a server certificate made by openssl for this run. A client
 * that trusts the CA works end to end (a signed streamed upload, a download); one that does not
 * is refused; plain HTTP gets no answer; a key that is not the certificate's stops start-up.
 */
const run = promisify(execFile);

async function makeCa(dir: string): Promise<{ ca: string; cert: string; key: string; otherKey: string }> {
  const at = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    at('ca.key'),
    '-out',
    at('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=visor test CA',
  ]);
  await run('openssl', ['req', ...ec, '-keyout', at('server.key'), '-out', at('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(at('san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    at('server.csr'),
    '-CA',
    at('ca.pem'),
    '-CAkey',
    at('ca.key'),
    '-CAcreateserial',
    '-out',
    at('server.pem'),
    '-days',
    '2',
    '-extfile',
    at('san.cnf'),
  ]);
  await run('openssl', [
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-out',
    at('other.key'),
  ]);
  return { ca: at('ca.pem'), cert: at('server.pem'), key: at('server.key'), otherKey: at('other.key') };
}

describe('TLS on serve', () => {
  let pki: Awaited<ReturnType<typeof makeCa>>;
  let pkiDir: string;
  let t: SecureServer;

  beforeAll(async () => {
    pkiDir = await mkdtemp(join(tmpdir(), 'visor-pki-'));
    pki = await makeCa(pkiDir);
    t = await startSecureServer({
      yaml: [
        'stores:',
        '  local: { type: file }',
        'server:',
        '  host: 127.0.0.1',
        `  tls: { cert: ${pki.cert}, key: ${pki.key} }`,
        '  limits: { headerTimeoutSeconds: 2 }',
      ].join('\n'),
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await rm(pkiDir, { recursive: true, force: true });
  });

  const client = (withCa: boolean) =>
    new VisorClient(
      loadClientSettings({
        VISOR_URL: t.url,
        VISOR_ACCESS_KEY: t.users.bob.accessKey,
        VISOR_SECRET_KEY: t.users.bob.secretKey,
        ...(withCa ? { VISOR_CA_FILE: pki.ca } : {}),
        HOME: pkiDir,
      }),
    );

  it('listens on https and serves a client that trusts the CA: signed streamed upload, listing, download', async () => {
    expect(t.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const data = randomBytes(300_000);
    const image = await client(true).add(
      { name: 'over-tls', architecture: 'x86_64' },
      { stream: Readable.from([data]), size: data.length },
    );
    expect(image).toMatchObject({ status: 'available', size: data.length, access: 'private' });
    expect((await client(true).list('brief', { name: 'over-tls' })).map((i) => i['_id'])).toEqual([image['_id']]);
    const got = await client(true).download(String(image['_id']));
    expect((await buffer(got.stream)).equals(data)).toBe(true);
  });

  it('a client that does not trust the certificate is refused, naming the fix', async () => {
    await expect(client(false).list('brief')).rejects.toMatchObject({
      kind: 'unavailable',
      message: expect.stringMatching(/certificate.*VISOR_CA_FILE/),
    });
  });

  it('plain HTTP on the TLS port gets no HTTP answer', async () => {
    const { port } = new URL(t.url);
    const text = await new Promise<string>((resolve) => {
      let got = '';
      const socket = connect(Number(port), '127.0.0.1', () => socket.write('GET /health HTTP/1.1\r\nhost: x\r\n\r\n'));
      socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
      socket.on('close', () => resolve(got));
      socket.on('error', () => undefined);
      setTimeout(() => socket.destroy(), 5000);
    });
    expect(text).not.toMatch(/HTTP\/1\.1 200/);
  });

  it('a TCP connection that never starts the handshake is closed at the header deadline', async () => {
    const { port } = new URL(t.url);
    const started = Date.now();
    const ms = await new Promise<number>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1');
      socket.on('close', () => resolve(Date.now() - started));
      socket.on('error', () => undefined);
    });
    expect(ms).toBeGreaterThanOrEqual(1500);
    expect(ms).toBeLessThan(8000);
  });

  it("a key that is not the certificate's, or a missing file, stops start-up with a config error", async () => {
    for (const tls of [
      `{ cert: ${pki.cert}, key: ${pki.otherKey} }`,
      `{ cert: ${pki.cert}, key: ${join(pkiDir, 'missing.key')} }`,
    ]) {
      const dir = await mkdtemp(join(tmpdir(), 'visor-badtls-'));
      const file = join(dir, 'visor.yaml');
      await writeFile(file, `dataDir: ${dir}\nserver: { host: 127.0.0.1, tls: ${tls} }\n`);
      const runtime = await openRuntime({ configFile: file, env: {}, logger: silentLogger });
      await expect(startServer(runtime, { port: 0 })).rejects.toMatchObject({
        kind: 'config',
        message: expect.stringMatching(/server\.tls/),
      });
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
