import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../support/raw-http.js';
import { recordingLogger } from '../support/recording-logger.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * What the API tells an attacker, and what it writes down: thousands of filters are a 4xx
 * (not a 500 from the catalog), a 5xx names no endpoint, bucket, object key or path (only a
 * request id, which finds the details in the log).
 */
describe('answers: filter caps and generic 5xx bodies', () => {
  let t: SecureServer;
  const log = recordingLogger();
  const bucket = `secret-bucket-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    t = await startSecureServer({
      logger: log,
      yaml: [
        'stores:',
        '  local: { type: file }',
        `  vault: { type: s3, options: { endpoint: 'http://127.0.0.1:1', bucket: ${bucket},`,
        '    accessKeyId: AKIAEXAMPLE, secretAccessKey: example-secret-key } }',
        'defaultStore: vault',
        'server: { host: 127.0.0.1 }',
      ].join('\n'),
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('1,500 filter parameters: 400 with a clear message, never a 500', async () => {
    const query: [string, string][] = Array.from({ length: 1500 }, (_, i) => [`p${i}`, 'x']);
    const r = await rawRequest(t.url, { method: 'GET', path: '/images', query, as: t.users.bob });
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ code: 400, message: expect.stringMatching(/too many filters: at most 64/) });
    const ok = await rawRequest(t.url, { method: 'GET', path: '/images', query: query.slice(0, 64), as: t.users.bob });
    expect(ok.status).toBe(200);
    const over = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: query.slice(0, 65),
      as: t.users.bob,
    });
    expect(over.status).toBe(400);
  });

  it('a store failure: 503 with a request id, no endpoint, bucket, key or path; the details are logged', async () => {
    const data = randomBytes(1000);
    const r = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: {
        'content-type': 'application/octet-stream',
        'x-image-meta-name': 'to-the-vault',
        'x-image-meta-architecture': 'x86_64',
      },
      body: data,
      as: t.users.bob,
    });
    expect(r.status).toBe(503);
    const body = r.json() as { code: number; message: string; request_id: string };
    expect(body).toMatchObject({
      code: 503,
      message: expect.stringMatching(/unavailable.*request id [0-9a-f]{16}/),
      request_id: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(r.headers['x-request-id']).toBe(body.request_id);
    const text = r.body.toString();
    for (const detail of [bucket, '127.0.0.1:1', 'ECONNREFUSED', 's3 store', t.dataDir])
      expect(text).not.toContain(detail);
    const logged = log.lines.find((l) => l.level === 'error' && l.meta['request'] === body.request_id);
    expect(logged).toBeDefined();
    expect(String((logged!.meta['error'] as Error).message)).toMatch(/s3 store|ECONNREFUSED|127\.0\.0\.1:1/);
  });

  it('4xx answers keep their precise message, and every answer carries a request id', async () => {
    const r = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/00000000-0000-4000-8000-000000000000/meta',
      as: t.users.bob,
    });
    expect(r.status).toBe(404);
    expect(r.json()).toMatchObject({ message: 'no image with id 00000000-0000-4000-8000-000000000000' });
    expect(r.headers['x-request-id']).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('logs: the agent content tokens are masked in the access log', () => {
  it('serves a one-time content URL and logs its path with the token masked, also for wrong tokens', async () => {
    const { buildApiServer } = await import('../../agent/api/server.js');
    const { agentRoutes } = await import('../../agent/api/routes/agent.js');
    const { ContentPublisher } = await import('../../agent/content-publisher.js');
    const { agentPublicPaths, agentSecretPaths } = await import('../../agent/daemon.js');
    const { ImageService } = await import('../../agent/service/image-service.js');
    const { SqliteCatalog } = await import('../../core/catalog/sqlite/sqlite-catalog.js');
    const { FileStore } = await import('../../core/store/file/file-store.js');
    const { Readable } = await import('node:stream');
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'visor-tokens-'));
    const catalog = new SqliteCatalog({ path: join(dir, 'catalog.db') });
    await catalog.init();
    const log = recordingLogger();
    const service = new ImageService({
      catalog,
      stores: new Map([['local', new FileStore({ root: join(dir, 'images') })]]),
      defaultStore: 'local',
      logger: log,
    });
    const publisher = new ContentPublisher(() => 'http://127.0.0.1');
    const app = buildApiServer({
      service,
      logger: log,
      authenticator: undefined,
      extraRoutes: agentRoutes({ daemon: undefined as never, publisher }),
      publicPaths: agentPublicPaths,
      secretPaths: agentSecretPaths,
    });
    try {
      const content = Buffer.from('image bytes');
      const { url } = publisher.publish({
        size: content.length,
        checksums: { md5: '', sha256: '', sha512: '' },
        diskFormat: 'raw',
        containerFormat: 'bare',
        open: async () => Readable.from([content]),
      });
      const token = url.split('/').pop()!;
      const ok = await app.inject({ method: 'GET', url: `/agent/content/${token}` });
      expect(ok.statusCode).toBe(200);
      expect(ok.rawPayload.equals(content)).toBe(true);
      const wrong = await app.inject({ method: 'GET', url: `/agent/content/${token.slice(0, -2)}xx` });
      expect(wrong.statusCode).toBe(404);
      const access = log.lines.filter((l) => l.message === 'request');
      expect(access.map((l) => l.meta['path'])).toEqual(['/agent/content/***', '/agent/content/***']);
      expect(JSON.stringify(log.lines)).not.toContain(token.slice(0, 12));
    } finally {
      await app.close();
      await catalog.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
