import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { buffer } from 'node:stream/consumers';
import { Container } from 'inversify';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { type GlanceDriver, glanceOptionsSchema, glancePlugin } from '../../../adapters/glance/index.js';
import { builtinRegistry } from '../../../agent/builtins.js';
import { loadConfig } from '../../../core/config/load.js';
import { isVisorError, type VisorError } from '../../../core/errors.js';
import type { ContentSource, CreateRequest } from '../../../core/iaas/port.js';
import { newImage } from '../../../core/image/image.js';
import type { ImageDraft } from '../../../core/image/model.js';
import { silentLogger } from '../../../core/logging/logger.js';
import { ServiceIds, type IaasDriverFactory } from '../../../core/registry/ids.js';
import { SecretRegistry } from '../../../core/logging/redact.js';
import { bufferContent, randomImageBytes } from '../../support/content.js';
import { requirePeer } from '../../peers/index.js';
import type { OpenStackPeer } from '../../peers/openstack.js';
import { deleteImagesNamed, glanceApi, imagesNamed, makeDriver } from './harness.js';

/** What the Glance adapter does beyond the conformance suite, against the real Keystone + Glance. */

const openstack = await requirePeer('openstack');
const skip = openstack.skip;
const peer = openstack.peer as OpenStackPeer;
const prefix = `visor-glance-test-${randomUUID().slice(0, 8)}`;
let counter = 0;
const drivers: GlanceDriver[] = [];
const servers: Array<{ server: Server; sockets: Set<Socket> }> = [];

function driver(who: 'admin' | 'demo', options: Parameters<typeof makeDriver>[2] = {}): GlanceDriver {
  const d = makeDriver(peer, who, options);
  drivers.push(d);
  return d;
}

function request(content: ContentSource, draft: Partial<ImageDraft> = {}): CreateRequest {
  const image = newImage({
    name: `${prefix}-${++counter}`,
    architecture: 'x86_64',
    access: 'private',
    diskFormat: content.diskFormat,
    containerFormat: content.containerFormat,
    ...draft,
  } as ImageDraft);
  const markers = { agent: 'glance-test', imageId: image.id, sha256: content.checksums.sha256, revision: 1 };
  return { image, markers, content, timeoutMs: 120_000 };
}

async function failure(promise: Promise<unknown>): Promise<VisorError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isVisorError(error)) throw new Error(`expected a VisorError, got ${String(error)}`);
  return error;
}

/** Serves `data` on loopback; `hang` accepts requests and never answers (a stuck source). */
async function serve(data: Buffer, options: { hang?: boolean; status?: number } = {}): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => {
    if (options.hang) return;
    if (options.status) {
      res.writeHead(options.status).end('no such image');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }).end(data);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push({ server, sockets });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/image.raw`;
}

const leftovers = (name: string) => imagesNamed(peer, name);
const run = promisify(execFile);

beforeEach((ctx) => {
  if (skip) ctx.skip(skip);
});

afterAll(async () => {
  for (const { server, sockets } of servers) {
    for (const s of sockets) s.destroy();
    server.close();
  }
  for (const d of drivers) await d.close();
  if (!skip) await deleteImagesNamed(peer, prefix);
});

describe('Glance driver: visibility and policy', () => {
  it("refuses a member's public image with a clear forbidden error, leaving nothing behind", async () => {
    const r = request(bufferContent(randomImageBytes(4096)), { access: 'public' });
    const error = await failure(driver('demo').create(r));
    expect(error.kind).toBe('forbidden');
    expect(error.message).toMatch(
      new RegExp(
        'creating image ".*": HTTP 403: You are not authorized to complete ' +
          String.raw`publicize_image action\. \(making an image public needs the admin role`,
      ),
    );
    expect(await leftovers(r.image.name)).toEqual([]);
  });

  it('lets an admin publish, and refuses to make a member image public on update', async () => {
    const content = bufferContent(randomImageBytes(4096));
    const pub = request(content, { access: 'public' });
    expect((await driver('admin').create(pub)).access).toBe('public');
    const priv = request(content);
    const demo = driver('demo');
    const cloud = await demo.create(priv);
    const error = await failure(demo.updateMetadata(cloud.nativeId, { ...priv.image, access: 'public' }, priv.markers));
    expect(error.kind).toBe('forbidden');
    expect((await demo.get(cloud.nativeId)).access).toBe('private');
  });

  it('lists an image someone switched to community visibility, so the agent never makes a duplicate', async () => {
    const r = request(bufferContent(randomImageBytes(4096)));
    const demo = driver('demo');
    const cloud = await demo.create(r);
    const api = await glanceApi(peer, 'demo');
    const patched = await api.patch(
      `/v2/images/${cloud.nativeId}`,
      [{ op: 'replace', path: '/visibility', value: 'community' }],
      {
        headers: { 'Content-Type': 'application/openstack-images-v2.1-json-patch' },
      },
    );
    expect(patched.status, JSON.stringify(patched.data)).toBe(200);
    const listed = (await demo.list()).find((i) => i.nativeId === cloud.nativeId);
    expect(listed).toMatchObject({ markers: expect.objectContaining({ imageId: r.image.id }) });
    // Community is open to every project: visor reads it as public (never as narrower than it is).
    expect(listed?.access).toBe('public');
  });

  it("does not show a member another project's private image", async () => {
    const r = request(bufferContent(randomImageBytes(4096)));
    const cloud = await driver('admin').create(r);
    expect((await failure(driver('demo').get(cloud.nativeId))).kind).toBe('notFound');
    expect((await driver('demo').list()).some((i) => i.nativeId === cloud.nativeId)).toBe(false);
  });

  it('refuses to delete a protected image with a clear conflict, and leaves it in place', async () => {
    const d = driver('demo');
    const r = request(bufferContent(randomImageBytes(4096)));
    const cloud = await d.create(r);
    const api = await glanceApi(peer, 'demo');
    await api.patch(`/v2/images/${cloud.nativeId}`, [{ op: 'replace', path: '/protected', value: true }], {
      headers: { 'Content-Type': 'application/openstack-images-v2.1-json-patch' },
    });
    const error = await failure(d.retire(cloud.nativeId, 'delete'));
    expect(error.kind).toBe('conflict');
    expect(error.message).toBe(
      `Glance: image ${cloud.nativeId} is protected and cannot be ` +
        `deleted (someone must clear its "protected" flag first)`,
    );
    expect((await d.get(cloud.nativeId)).state).toBe('active');
  });

  it(
    'lists hidden and disabled images (a retired image is still known), ' + 'and refuses to deactivate a queued one',
    async () => {
      const d = driver('demo');
      const hidden = await d.create(request(bufferContent(randomImageBytes(4096))));
      const disabled = await d.create(request(bufferContent(randomImageBytes(4096))));
      await d.retire(hidden.nativeId, 'hide');
      await d.retire(disabled.nativeId, 'disable');
      await d.retire(disabled.nativeId, 'disable'); // idempotent
      const listed = await d.list();
      expect(listed.find((i) => i.nativeId === hidden.nativeId)).toMatchObject({ hidden: true, state: 'active' });
      expect(listed.find((i) => i.nativeId === disabled.nativeId)).toMatchObject({ hidden: false, state: 'disabled' });
      const api = await glanceApi(peer, 'demo');
      const queued = await api.post('/v2/images', {
        name: `${prefix}-queued`,
        disk_format: 'raw',
        container_format: 'bare',
      });
      expect((await failure(d.retire(String(queued.data.id), 'disable'))).kind).toBe('conflict');
    },
  );

  it("deletes a disabled image's data too (Glance leaves a deactivated image's file in the store)", async () => {
    const d = driver('demo');
    const cloud = await d.create(request(bufferContent(randomImageBytes(4096))));
    const file = join(peer.baseDir, 'glance', 'images', cloud.nativeId);
    expect(existsSync(file)).toBe(true);
    await d.retire(cloud.nativeId, 'disable');
    await d.retire(cloud.nativeId, 'delete');
    expect((await failure(d.get(cloud.nativeId))).kind).toBe('notFound');
    expect(existsSync(file)).toBe(false);
  });

  it('reports an unsupported retire mode before calling the cloud', async () => {
    const d = driver('demo', { retireModes: ['hide', 'delete'] });
    const error = await failure(d.retire(randomUUID(), 'disable'));
    expect(error.kind).toBe('unsupported');
    expect(error.message).toMatch(/retiring by disable is not enabled for this Glance \(retireModes: hide, delete\)/);
  });
});

describe('Glance driver: upload, import and verification', () => {
  it('imports by glance-direct: stage, import, active with the import lock gone, verified', async () => {
    const content = bufferContent(randomImageBytes(3 * 1024 * 1024 + 7));
    const d = driver('demo', { importMethod: 'glance-direct' });
    const progress: number[] = [];
    const cloud = await d.create({ ...request(content), onProgress: (n) => progress.push(n) });
    expect(cloud).toMatchObject({
      state: 'active',
      size: content.size,
      checksums: { md5: content.checksums.md5, sha512: content.checksums.sha512 },
    });
    expect(progress.at(-1)).toBe(content.size);
    const api = await glanceApi(peer, 'demo');
    const raw = (await api.get(`/v2/images/${cloud.nativeId}`)).data as Record<string, unknown>;
    expect(raw['os_glance_import_task']).toBeUndefined();
    expect(raw['os_hash_algo']).toBe('sha512');
    const data = await buffer((await d.download(cloud.nativeId)).stream);
    expect(createHash('sha256').update(data).digest('hex')).toBe(content.checksums.sha256);
  });

  it('imports by web-download from a loopback URL Glance fetches itself', async () => {
    const bytes = randomImageBytes(2 * 1024 * 1024 + 3);
    const content = bufferContent(bytes, 'raw', { url: await serve(bytes) });
    const d = driver('demo', { importMethod: 'web-download' });
    expect(d.capabilities.importFromUrl).toBe(true);
    const cloud = await d.create(request(content));
    expect(cloud).toMatchObject({
      state: 'active',
      size: content.size,
      checksums: { md5: content.checksums.md5, sha512: content.checksums.sha512 },
    });
  });

  it('falls back to uploading when web-download is configured but the content has no URL', async () => {
    const content = bufferContent(randomImageBytes(4096));
    const cloud = await driver('demo', { importMethod: 'web-download' }).create(request(content));
    expect(cloud.size).toBe(content.size);
  });

  it("reports a URL Glance's import filter refuses as invalidInput, leaving nothing behind", async () => {
    const bytes = randomImageBytes(4096);
    // Only 127.0.0.1 is allowed on this test rig; Glance's default refuses loopback hosts altogether.
    const url = (await serve(bytes)).replace('127.0.0.1', 'localhost');
    const r = request(bufferContent(bytes, 'raw', { url }));
    const error = await failure(driver('demo', { importMethod: 'web-download' }).create(r));
    expect(error.kind).toBe('invalidInput');
    expect(error.message).toMatch(
      new RegExp(
        String.raw`HTTP 400: URI for web-download does not pass filtering: .* \(the ` +
          String.raw`cloud's import_filtering_opts do not let Glance fetch from this URL\)`,
      ),
    );
    expect(await leftovers(r.image.name)).toEqual([]);
  });

  it('reports a web-download that fails in Glance (source answers 404), leaving nothing behind', async () => {
    const bytes = randomImageBytes(4096);
    const r = request(bufferContent(bytes, 'raw', { url: await serve(bytes, { status: 404 }) }));
    const error = await failure(driver('demo', { importMethod: 'web-download' }).create({ ...r, timeoutMs: 60_000 }));
    expect(error.kind).toBe('unavailable');
    expect(error.message).toMatch(/the import of image .* failed/);
    expect(await leftovers(r.image.name)).toEqual([]);
  });

  it('gives up on an image stuck in upload (the source stalls) with a timeout, and deletes it', async () => {
    const content = bufferContent(randomImageBytes(4096));
    // Sends one chunk, then nothing: the image stays `saving` in Glance.
    const stalled: ContentSource = {
      ...content,
      open: async () =>
        new Readable({
          read() {
            if (!(this as { sent?: boolean }).sent) {
              (this as { sent?: boolean }).sent = true;
              this.push(Buffer.alloc(1024));
            }
          },
        }),
    };
    const r = request(stalled);
    const started = Date.now();
    const error = await failure(driver('demo').create({ ...r, timeoutMs: 2000 }));
    expect(error.kind).toBe('timeout');
    expect(error.message).toMatch(
      new RegExp(
        String.raw`^Glance: image ".*" \(.*\) was not usable within 2 s \(stuck uploading ` +
          String.raw`the data; Glance status when last read: queued\); image .* was deleted$`,
      ),
    );
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await leftovers(r.image.name)).toEqual([]);
  });

  it(
    'gives up on an import stuck in Glance (web-download ' + 'source never answers) with a timeout, and deletes it',
    async () => {
      const bytes = randomImageBytes(4096);
      const r = request(bufferContent(bytes, 'raw', { url: await serve(bytes, { hang: true }) }));
      const error = await failure(driver('demo', { importMethod: 'web-download' }).create({ ...r, timeoutMs: 3000 }));
      expect(error.kind).toBe('timeout');
      expect(error.message).toMatch(
        new RegExp(
          String.raw`was not usable within 3 s \(stuck waiting for the import; ` +
            String.raw`Glance status when last read: importing\); image .* was deleted$`,
        ),
      );
      expect(await leftovers(r.image.name)).toEqual([]);
    },
  );

  it('deletes the copy and reports integrity when Glance reports another md5/sha512 than declared', async () => {
    const bytes = randomImageBytes(64 * 1024);
    const truth = bufferContent(bytes);
    // sha256 and size are true (so the upload itself passes); md5 and sha512 are not.
    const liar: ContentSource = {
      ...truth,
      checksums: { ...truth.checksums, md5: 'f'.repeat(32), sha512: 'e'.repeat(128) },
    };
    const r = request(liar);
    const error = await failure(driver('demo').create(r));
    expect(error.kind).toBe('integrity');
    expect(error.message).toMatch(
      new RegExp(
        `^Glance's copy of image .* does not match the content: md5 is [0-9a-f]{32}, ` +
          `expected f{32}; sha512 is [0-9a-f]{128}, expected e{128}; image .* was deleted$`,
      ),
    );
    expect(await leftovers(r.image.name)).toEqual([]);
  });

  it('stops the upload and reports integrity when the bytes do not match the declared sha256 or size', async () => {
    const bytes = randomImageBytes(64 * 1024);
    const truth = bufferContent(bytes);
    const cases: Array<[string, ContentSource, RegExp]> = [
      [
        'sha256',
        { ...truth, checksums: { ...truth.checksums, sha256: 'd'.repeat(64) } },
        /sha256 is [0-9a-f]{64}, expected d{64}/,
      ],
      ['too long', { ...truth, size: truth.size - 1 }, /more than the declared 65535 bytes/],
      ['too short', { ...truth, size: truth.size + 1 }, /size is 65536 bytes, expected 65537/],
    ];
    for (const [what, source, pattern] of cases) {
      const r = request(source);
      const error = await failure(driver('demo').create(r));
      expect(error.kind, what).toBe('integrity');
      expect(error.message, what).toMatch(pattern);
      expect(await leftovers(r.image.name), what).toEqual([]);
    }
  });

  it('deletes the image when the caller aborts', async () => {
    const content = bufferContent(randomImageBytes(4096));
    const stalled: ContentSource = { ...content, open: async () => new Readable({ read() {} }) };
    const r = request(stalled);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 1000);
    const error = await failure(driver('demo').create({ ...r, signal: controller.signal }));
    expect(error.kind).toBe('unavailable');
    expect(error.message).toMatch(/was aborted; image .* was deleted/);
    expect(await leftovers(r.image.name)).toEqual([]);
  });

  it('downloads a byte range', async () => {
    const bytes = randomImageBytes(10_000);
    const d = driver('demo');
    const cloud = await d.create(request(bufferContent(bytes)));
    const { stream, size } = await d.download(cloud.nativeId, { range: { start: 100, end: 199 } });
    expect(size).toBe(100);
    expect((await buffer(stream)).equals(bytes.subarray(100, 200))).toBe(true);
    const api = await glanceApi(peer, 'demo');
    const queued = await api.post('/v2/images', {
      name: `${prefix}-empty`,
      disk_format: 'raw',
      container_format: 'bare',
    });
    expect((await failure(d.download(String(queued.data.id)))).kind).toBe('conflict');
    expect((await failure(d.download(randomUUID()))).kind).toBe('notFound');
  });
});

describe('Glance plugin', () => {
  const base = {
    authUrl: 'http://127.0.0.1:25000/v3',
    auth: { type: 'password', username: 'u', password: 'secret-pw', projectName: 'p' },
  };

  it('fills defaults and validates the options', () => {
    const parsed = glanceOptionsSchema.parse(base);
    expect(parsed).toMatchObject({
      interface: 'public',
      importMethod: 'upload',
      pageSize: 200,
      timeouts: { request: 60 },
      pollInterval: 2,
      retireModes: ['hide', 'disable', 'delete'],
      auth: { userDomainName: 'Default', projectDomainName: 'Default' },
    });
    const bad = [
      { ...base, insecure: true },
      { ...base, authUrl: 'ftp://x' },
      { ...base, auth: { ...base.auth, projectId: 'x' } },
      { ...base, auth: { type: 'password', username: 'u', password: 'p' } },
      { ...base, auth: { type: 'applicationCredential', secret: 's' } },
      { ...base, auth: { type: 'applicationCredential', name: 'n', secret: 's' } },
      { ...base, interface: 'private' },
      { ...base, importMethod: 'copy-image' },
      { ...base, retireModes: ['hide', 'hide'] },
      { ...base, timeouts: { request: 0 } },
    ];
    for (const options of bad)
      expect(glanceOptionsSchema.safeParse(options).success, JSON.stringify(options)).toBe(false);
    expect(
      glanceOptionsSchema.safeParse({ ...base, auth: { type: 'applicationCredential', id: 'i', secret: 's' } }).success,
    ).toBe(true);
    // A create's deadline is the caller's (sync.timeouts.action): the old option still loads, and does nothing.
    expect(glanceOptionsSchema.parse(base).timeouts.activeWait).toBeUndefined();
    const old = glanceOptionsSchema.parse({ ...base, timeouts: { request: 60, activeWait: 3600 } });
    expect(old.timeouts.activeWait).toBe(3600);
  });

  it('reports bad options through the config loader, each with its file position and path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-glance-config-'));
    try {
      const file = join(dir, 'visor.yaml');
      await writeFile(
        file,
        [
          'clouds:',
          '  site:',
          '    adapter: glance',
          '    options:',
          '      authUrl: http://127.0.0.1:25000/v3',
          '      auth:',
          '        type: password',
          '        username: demo',
          '        password: ${GLANCE_PW}',
          '      insecure: true',
          '',
        ].join('\n'),
      );
      const error = await failure(loadConfig({ file, env: { GLANCE_PW: 'pw-secret-1' }, registry: builtinRegistry() }));
      expect(error.kind).toBe('config');
      expect(error.message).toContain(
        'visor.yaml:6:7: clouds.site.options.auth.projectName: give exactly one of projectName and projectId',
      );
      expect(error.message).toContain('visor.yaml:10:7: clouds.site.options.insecure: unknown key');
      expect(error.message).not.toContain('pw-secret-1');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('registers the secret, refuses an unreadable CA bundle, and builds a working driver', async () => {
    const secrets = new SecretRegistry();
    const context = { name: 'test', dataDir: '/tmp', logger: silentLogger, secrets };
    expect(await glancePlugin.optionsSchema['~standard'].validate(base)).toMatchObject({ value: expect.anything() });
    const container = new Container();
    container.load(glancePlugin.module);
    const factory = container.get<IaasDriverFactory>(ServiceIds.IaasDriverFactory, { name: 'glance' });
    const demo = {
      type: 'password',
      username: peer.demo.username,
      password: peer.demo.password,
      projectName: peer.demo.projectName,
    };
    const options = glanceOptionsSchema.parse({ authUrl: peer.authUrl, region: peer.region, auth: demo });
    const d = (await factory.create(options, context)) as GlanceDriver;
    drivers.push(d);
    expect(secrets.maskText(`x ${peer.demo.password} y`)).toBe('x *** y');
    expect(Array.isArray(await d.list())).toBe(true);
    const missing = await failure(Promise.resolve(factory.create({ ...options, caBundle: 'nope.pem' }, context)));
    expect(missing.kind).toBe('config');
    expect(missing.message).toMatch(/cannot read caBundle \/tmp\/nope\.pem/);
  });

  it('trusts the CA bundle it is given (the real Keystone behind TLS with a self-signed certificate)', async (ctx) => {
    const openssl = await requirePeer('openssl');
    if (!openssl.peer) return ctx.skip(openssl.skip);
    const dir = await mkdtemp(join(tmpdir(), 'visor-glance-tls-'));
    const subject = ['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'];
    const files = ['-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')];
    const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await run(openssl.peer.bin, ['req', '-x509', ...key, '-days', '1', ...subject, ...files]);
    const keystone = new URL(peer.authUrl);
    // A TLS terminator in front of the real Keystone: only the transport changes.
    const tls = createTlsServer(
      { key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) },
      (socket) => {
        const upstream = connect(Number(keystone.port), keystone.hostname);
        socket.pipe(upstream).pipe(socket);
        const close = () => {
          socket.destroy();
          upstream.destroy();
        };
        socket.on('error', close);
        upstream.on('error', close);
      },
    );
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    try {
      const authUrl = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/v3`;
      const untrusting = driver('demo', { authUrl });
      const error = await failure(untrusting.list());
      expect(error.kind).toBe('config');
      expect(error.message).toMatch(
        /TLS certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\); give its CA in the caBundle option/,
      );
      const trusting = driver('demo', { authUrl, caBundle: await readFile(join(dir, 'cert.pem'), 'utf8') });
      expect(Array.isArray(await trusting.list())).toBe(true);
    } finally {
      tls.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
