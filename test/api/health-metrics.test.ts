import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDaemon } from '../../agent/daemon.js';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { type RunningServer, sealingBox, startServer } from '../../agent/serve.js';
import { addUser } from '../../agent/service/users.js';
import { VisorClient } from '../../agent/client/client.js';
import { silentLogger } from '../../core/logging/logger.js';
import { requirePeer } from '../peers/index.js';
import { createTestBucket, deleteTestBucket } from '../peers/s3.js';

interface Ready {
  status: string;
  checks: { name: string; ok: boolean; error?: string }[];
}

async function serve(dir: string, yaml: string, host = '127.0.0.1', server = ''): Promise<RunningServer> {
  const file = join(dir, `visor-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, `dataDir: ${dir}\nserver: { host: ${host}${server ? `, ${server}` : ''} }\n${yaml}`);
  const runtime = await openRuntime({ configFile: file, env: {}, logger: silentLogger });
  return startServer(runtime, { port: 0 });
}

const ready = async (url: string) => {
  const response = await fetch(`${url}/health/ready`);
  return { status: response.status, body: (await response.json()) as Ready };
};

describe('health and metrics of visor serve', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-health-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('/health/live answers; /health/ready checks the catalog and the default store', async () => {
    const server = await serve(
      dir,
      'stores: { local: { type: file, options: { path: images } } }\ndefaultStore: local\n',
    );
    try {
      expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      const good = await ready(server.url);
      expect(good.status).toBe(200);
      expect(good.body.checks.map((c) => [c.name, c.ok])).toEqual([
        ['catalog', true],
        ['store local', true],
      ]);
      // The store's folder goes away (an unmounted disk): not ready, and the answer says which check.
      await rm(join(dir, 'images'), { recursive: true });
      const bad = await ready(server.url);
      expect(bad.status).toBe(503);
      expect(bad.body.checks.find((c) => c.name === 'store local')).toMatchObject({
        ok: false,
        error: 'failed (see the log)',
      });
      expect(JSON.stringify(bad.body)).not.toContain(dir);
      await mkdir(join(dir, 'images'), { mode: 0o700 });
      expect((await ready(server.url)).status).toBe(200);
      // Liveness does not depend on the backends.
      expect((await fetch(`${server.url}/health/live`)).status).toBe(200);
    } finally {
      await server.close(1000);
    }
  });

  it('serves request, latency, byte, upload and backend metrics on /metrics', async () => {
    const server = await serve(dir, '', '127.0.0.1', 'auth: { enabled: false }');
    try {
      await fetch(`${server.url}/images`);
      await fetch(`${server.url}/images/not-an-id/meta`);
      const body = JSON.stringify({ image: { name: 'm', architecture: 'x86_64' } });
      const headers = { 'content-type': 'application/json' };
      expect((await fetch(`${server.url}/images`, { method: 'POST', body, headers })).status).toBe(201);
      await fetch(`${server.url}/health/ready`);
      const text = await (await fetch(`${server.url}/metrics`)).text();
      expect(text).toMatch(/visor_http_requests_total\{method="GET",route="\/images",status="200"\} 1/);
      expect(text).toMatch(/visor_http_requests_total\{method="GET",route="\/images\/:id\/meta",status="404"\} 1/);
      expect(text).toMatch(/visor_http_request_duration_seconds_count\{method="GET",route="\/images"\} 1/);
      expect(text).toMatch(/visor_http_received_bytes_total [1-9]/);
      expect(text).toMatch(/visor_http_sent_bytes_total [1-9]/);
      expect(text).toMatch(/visor_http_uploads_in_flight 0/);
      expect(text).toMatch(/visor_backend_latency_seconds_count\{backend="catalog",result="ok"\} 1/);
      expect(text).toMatch(/visor_process_cpu_seconds_total/);
    } finally {
      await server.close(1000);
    }
  });

  it('protects /metrics beyond loopback: a signed admin request, or the configured bearer token', async () => {
    const signed = await serve(dir, '', '0.0.0.0');
    try {
      const url = signed.url.replace('0.0.0.0', '127.0.0.1');
      expect((await fetch(`${url}/metrics`)).status).toBe(401);
      const box = await sealingBox({
        config: { server: { auth: { keyFile: 'credentials.key' } }, dataDir: dir },
      } as never);
      const admin = await addUser(signed.catalog.users, box, `admin-${Date.now()}`, true);
      const client = new VisorClient({ url, accessKey: admin.accessKey, secretKey: admin.secretKey, source: 'test' });
      const text = String(await client.getJson('/metrics'));
      expect(text).toContain('visor_http_requests_total');
      // Health stays open for load balancers.
      expect((await fetch(`${url}/health/ready`)).status).toBe(200);
    } finally {
      await signed.close(1000);
    }
    const token = 'a-scraper-token-of-some-length';
    const withToken = await serve(dir, '', '0.0.0.0', `metrics: { token: ${token} }`);
    try {
      const url = withToken.url.replace('0.0.0.0', '127.0.0.1');
      expect((await fetch(`${url}/metrics`)).status).toBe(401);
      expect(
        (await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status,
      ).toBe(401);
      const ok = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('visor_http_requests_total');
    } finally {
      await withToken.close(1000);
    }
  });
});

const { peer: s3, skip: s3Skip } = await requirePeer('s3');

describe.skipIf(!s3)(`readiness against the real S3 server${s3Skip ? ` (skipped: ${s3Skip})` : ''}`, () => {
  let dir: string;
  let bucket: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-health-s3-'));
    bucket = await createTestBucket(s3!, 'health');
  });
  afterAll(async () => {
    await deleteTestBucket(s3!, bucket);
    await rm(dir, { recursive: true, force: true });
  });

  const storeYaml = (secret: string, name = bucket) =>
    [
      'stores:',
      '  central:',
      '    type: s3',
      `    options: { endpoint: "${s3!.endpoint}", region: ${s3!.region}, bucket: ${name},`,
      `      accessKeyId: "${s3!.accessKeyId}",`,
      `      secretAccessKey: "${secret}" }`,
      'defaultStore: central',
      '',
    ].join('\n');

  it('is ready with a reachable bucket, not with refused credentials or a missing bucket', async () => {
    for (const [yaml, expected] of [
      [storeYaml(s3!.secretAccessKey), 200],
      [storeYaml('not-the-secret'), 503],
      [storeYaml(s3!.secretAccessKey, `${bucket}-missing`), 503],
    ] as const) {
      const server = await serve(dir, yaml);
      try {
        const answer = await ready(server.url);
        expect(answer.status, JSON.stringify(answer.body)).toBe(expected);
        expect(JSON.stringify(answer.body)).not.toContain(bucket);
      } finally {
        await server.close(1000);
      }
    }
  });
});

describe('readiness of the agent', () => {
  it('fails when the last runs of an enabled cloud all failed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-health-agent-'));
    const file = join(dir, 'visor.yaml');
    await writeFile(
      file,
      [
        `dataDir: ${dir}`,
        'agent: { unreadyAfterFailures: 2 }',
        'clouds:',
        '  one:',
        '    adapter: opennebula',
        '    options: { endpoint: "http://127.0.0.1:9/RPC2", username: u, password: p, datastore: 1 }',
      ].join('\n'),
    );
    const daemon = new AgentDaemon({ configFile: file, env: {}, logger: silentLogger, port: 0 });
    await daemon.start();
    try {
      expect((await fetch(`${daemon.url}/health/ready`)).status).toBe(200);
      const failed = () => daemon.trigger('one', 'manual');
      expect((await failed()).status).toBe('failed');
      // One failure is a blip.
      expect((await fetch(`${daemon.url}/health/ready`)).status).toBe(200);
      await failed();
      const answer = await ready(daemon.url);
      expect(answer.status).toBe(503);
      expect(answer.body.checks.find((c) => c.name === 'sync runs')).toMatchObject({ ok: false });
      // The agent's sync metrics are served beside the API's.
      const text = await (await fetch(`${daemon.url}/metrics`)).text();
      expect(text).toMatch(/visor_sync_runs_total\{target="one",status="failed"\} 2/);
      expect(text).toContain('visor_http_requests_total');
    } finally {
      await daemon.stop(1000);
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
