import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentDaemon } from '../../agent/daemon.js';
import { signPayload } from '../../agent/notify/webhooks.js';
import { memoryPlugin } from '../../core/iaas/memory/index.js';
import type { RunRecord } from '../../core/catalog/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { FileServer } from './support/file-server.js';
import { hepixList } from './support/hepix-fixtures.js';

const secret = 'webhook-secret-for-tests-0123456789';

describe('visor agent: subscriptions wake the clouds; webhooks are signed, retried and recorded', () => {
  let files: FileServer;
  let receiver: Server;
  const received: { headers: IncomingHttpHeaders; body: string; answered: number }[] = [];
  let daemon: AgentDaemon;

  beforeAll(async () => {
    files = await new FileServer().start();
    const data = randomBytes(64 * 1024);
    files.files.set('/img', data);
    const images = [
      { id: 'agent-img', title: 'agent image', version: '1', data, url: files.url('/img'), format: 'RAW' },
    ];
    files.files.set('/list', hepixList({ signer: { dn: '/CN=x', caDn: '/CN=y' }, version: '1', images }));
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        // The first delivery fails: the agent must retry it.
        const answered = received.length === 0 ? 503 : 204;
        received.push({ headers: req.headers, body, answered });
        res.writeHead(answered).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const dir = mkdtempSync(join(tmpdir(), 'visor-agent-sources-'));
    const config = join(dir, 'visor.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${join(dir, 'data')}`,
        'server:',
        '  auth:',
        '    enabled: false',
        'clouds:',
        '  mem:',
        '    adapter: memory',
        '    options:',
        `      cloud: i20-wake-${process.pid}`,
        'subscriptions:',
        '  appdb:',
        '    source: hepix',
        '    options:',
        `      url: ${files.url('/list')}`,
        '      requireSignature: false',
        '      allowPrivateNetworks: true',
        'webhooks:',
        `  - url: ${hook}`,
        `    secret: ${secret}`,
        '',
      ].join('\n'),
    );
    daemon = new AgentDaemon({
      configFile: config,
      env: {},
      logger: silentLogger,
      plugins: [memoryPlugin],
      host: '127.0.0.1',
      port: 0,
    });
    await daemon.start();
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop(5_000);
    await files?.stop();
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
  });

  it('imports, then wakes the cloud within seconds; every run posts its events, signed, after a retry', async () => {
    const run = await daemon.syncSubscription('appdb');
    expect(run.actions.filter((a) => a.action === 'import').map((a) => a.result)).toEqual(['imported']);
    const delivery = run.actions.find((a) => a.action === 'webhook')!;
    expect(delivery).toMatchObject({ result: 'created', attempts: 2 });
    const stored = await daemon.server.catalog.runs.get(run.id);
    expect(stored?.actions.some((a) => a.action === 'webhook' && a.result === 'created')).toBe(true);

    expect(received.map((r) => r.answered)).toEqual([503, 204]);
    const last = received[1]!;
    const timestamp = String(last.headers['x-visor-timestamp']);
    expect(last.headers['x-visor-signature']).toBe(signPayload(secret, timestamp, last.body));
    expect(last.headers['x-visor-signature']).not.toBe(signPayload('another secret entirely', timestamp, last.body));
    const payload = JSON.parse(last.body) as { events: { event: string; target: string; name?: string }[] };
    expect(payload.events).toEqual([
      expect.objectContaining({ event: 'image.imported', target: 'source:appdb', name: 'agent image' }),
    ]);

    // The subscription changed the catalog: the cloud syncs without its schedule (it has none).
    const deadline = Date.now() + 20_000;
    let cloudRun: RunRecord | undefined;
    while (Date.now() < deadline) {
      [cloudRun] = await daemon.server.catalog.runs.list({ target: 'mem', limit: 1 });
      if (cloudRun && cloudRun.status !== 'running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(cloudRun?.trigger).toBe('change');
    expect(cloudRun?.actions.filter((a) => a.action !== 'webhook').map((a) => a.result)).toEqual(['created']);
  }, 60_000);
});
