import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifest } from '../../adapters/eucalyptus/mapper-manifest.js';
import { Ec2QueryClient } from '../../core/wire/ec2/client.js';
import { openSession, type SyncSession } from '../../agent/session.js';
import { syncTarget } from '../../agent/sync/runner.js';
import { isVisorError } from '../../core/errors.js';
import { silentLogger } from '../../core/logging/logger.js';

/**
 * Hostile native XML from a cloud: entity expansion (billion laughs), external entities, huge
 * and deeply nested documents, and documents that are not the cloud's at all. From OpenNebula
 * (XML-RPC, through a whole `syncTarget`: the run fails with the reason, nothing is created or
 * imported, the agent lives on) and from EC2 (the Query API client and the bundle manifest
 * parser of the Eucalyptus adapter). Each ends as one `invalidResponse`, fast, with memory
 * bounded whatever the server sends.
 */
type Body = string | (() => Readable);
const lolz = `<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 ${Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`).join('\n ')}
]>`;
const xxe = '<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>';
const escapeXml = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
/** A body that would go on for `mib` MiB if nobody stopped reading it; counts what was sent. */
function endless(prefix: string, mib: number, sent: { bytes: number }): () => Readable {
  return () =>
    Readable.from(
      (function* () {
        yield prefix;
        for (let i = 0; i < mib * 16; i++) {
          sent.bytes += 65536;
          yield 'x'.repeat(65536);
        }
      })(),
    );
}

let server: Server;
let base: string;
let body: Body = '';
beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/xml' });
      if (typeof body === 'string') res.end(body);
      else
        body()
          .on('error', () => undefined)
          .pipe(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(
  () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
);

/** Runs `work` against `reply`, returning the error it must end in, how long it took and how much the heap grew. */
async function against(
  reply: Body,
  work: () => Promise<unknown>,
): Promise<{ error: unknown; ms: number; heapMiB: number }> {
  body = reply;
  const heap = process.memoryUsage().heapUsed;
  const started = Date.now();
  const error = await work().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, ms: Date.now() - started, heapMiB: (process.memoryUsage().heapUsed - heap) / 1024 / 1024 };
}

describe(
  'OpenNebula: a sync against a hostile oned fails cleanly ' + 'with the reason, creating and importing nothing',
  () => {
    let dir: string;
    let session: SyncSession;
    const sent = { bytes: 0 };
    const rpc = (inner: string, prolog = '') =>
      `<?xml version="1.0" ` +
      `encoding="UTF-8"?>\r\n${prolog}<methodResponse><params><param><value><array><data><value><boolean>1</boolean>` +
      `</value><value><string>${inner}</string></value><value><i4>0</i4>` +
      `</value></data></array></value></param></params></methodResponse>\r\n`;
    const pool = (images: string, prolog = '') =>
      escapeXml(`<?xml version="1.0"?>${prolog}<IMAGE_POOL>${images}</IMAGE_POOL>`);

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'visor-bad-xml-'));
      const config = join(dir, 'visor.yaml');
      await writeFile(
        config,
        `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: bad-xml }
clouds:
  one:
    adapter: opennebula
    options: { endpoint: '${base}/RPC2', username: oneadmin, password: secret-password, ` +
          `datastore: default, maxResponseMegabytes: 4, timeouts: { request: 10 } }
    sync: { retries: { attempts: 1 }, import: metadata, retire: { mode: delete } }
`,
      );
      session = await openSession({ configFile: config, env: {}, logger: silentLogger });
    });
    afterAll(async () => {
      await session?.close();
      await rm(dir, { recursive: true, force: true });
    });

    it.each([
      [
        'billion laughs in the XML-RPC envelope',
        rpc('&lol9;', lolz),
        /not XML-RPC|malformed|not acceptable|DTD|entit/i,
      ],
      [
        'billion laughs in the IMAGE_POOL document',
        rpc(pool(`<IMAGE><ID>1</ID><NAME>&lol9;</NAME></IMAGE>`, lolz)),
        /DTD entities/,
      ],
      ['an external entity in the envelope', rpc('&xxe;', xxe), /not XML-RPC|malformed|not acceptable|DTD|entit/i],
      [
        'an external entity in the document',
        rpc(pool('<IMAGE><ID>1</ID><NAME>&xxe;</NAME></IMAGE>', xxe)),
        /External entities|DTD/,
      ],
      ['a deeply nested document', rpc(pool(`<IMAGE>${'<A>'.repeat(5000)}x${'</A>'.repeat(5000)}</IMAGE>`)), /nested/],
      [
        'a huge reply (64 MiB if read to the end)',
        endless(
          '<?xml version="1.0"?><methodResponse><params><param><value>' +
            '<array><data><value><boolean>1</boolean></value><value><string>',
          64,
          sent,
        ),
        /larger than the configured limit/,
      ],
      ['an HTML page', '<html><body><h1>502 Bad Gateway</h1></body></html>', /not XML-RPC/],
      ['a truncated document', rpc(pool('<IMAGE><ID>1</ID>')), /Unclosed|malformed|not acceptable/i],
    ] as [string, Body, RegExp][])('%s', async (_name, reply, reason) => {
      const target = session.built.targets.get('one')!;
      const imagesBefore = (await session.deps.catalog.images.list({ limit: 1000 })).items.length;
      const { error, ms, heapMiB } = await against(reply, async () => {
        const run = await syncTarget(target, session.deps, { trigger: 'cli' });
        if (run.status !== 'failed' || !run.error) throw new Error(`the run ended ${run.status}`);
        throw Object.assign(new Error(run.error), { run });
      });
      const message = (error as Error).message;
      expect(message).toMatch(/^opennebula: /);
      expect(message).toMatch(reason);
      expect(message).not.toMatch(/secret-password/);
      expect(message.split('\n')).toHaveLength(1);
      expect((error as { run?: { actions: unknown[] } }).run?.actions).toEqual([]);
      expect(ms).toBeLessThan(10_000);
      expect(heapMiB).toBeLessThan(64);
      expect((await session.deps.catalog.images.list({ limit: 1000 })).items.length).toBe(imagesBefore);
      // The run is recorded as failed, with the reason.
      const [last] = await session.deps.catalog.runs.list({ target: 'one', limit: 1 });
      expect(last).toMatchObject({ status: 'failed', error: message });
    });

    it('stopped reading the huge reply near the limit', () => {
      expect(sent.bytes).toBeLessThan(32 * 1024 * 1024);
    });
  },
);

describe('EC2: hostile Query API replies and bundle manifests are invalidResponse', () => {
  let ec2: Ec2QueryClient;
  const sent = { bytes: 0 };
  const item = (name: string) =>
    `<item><imageId>emi-12345678</imageId><imageLocation>bucket/image.manifest.xml</imageLocation>` +
    `<imageState>available</imageState><imageOwnerId>123456789012</imageOwnerId><isPublic>false</isPublic>` +
    `<architecture>x86_64</architecture><imageType>machine</imageType><name>${name}</name></item>`;
  const describeImages = (inner: string, prolog = '') =>
    `<?xml version="1.0" encoding="UTF-8"?>${prolog}<DescribeImagesResponse ` +
    `xmlns="http://ec2.amazonaws.com/doc/2010-08-31/"><requestId>r-1</requestId>` +
    `<imagesSet>${inner}</imagesSet></DescribeImagesResponse>`;

  beforeAll(() => {
    ec2 = new Ec2QueryClient({
      endpoint: `${base}/services/compute`,
      region: 'eucalyptus',
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'secret-access-key',
      maxAttempts: 1,
      requestTimeoutMs: 10_000,
    });
  });
  afterAll(() => ec2.close());

  it('reads a well-formed reply (the baseline)', async () => {
    body = describeImages(item('fine'));
    expect((await ec2.describeImages()).map((i) => i.name)).toEqual(['fine']);
  });

  it.each([
    ['billion laughs', describeImages(item('&lol9;'), lolz), /declares DTD entities/],
    ['an external entity', describeImages(item('&xxe;'), xxe), /declares DTD entities/],
    [
      'a deeply nested document',
      describeImages(item('x') + '<a>'.repeat(50_000) + '</a>'.repeat(50_000)),
      /DescribeImages/,
    ],
    [
      'a huge reply (256 MiB if read to the end)',
      endless(describeImages('').replace('</imagesSet></DescribeImagesResponse>', '<item><name>'), 256, sent),
      /larger than 67108864 bytes/,
    ],
    [
      'an HTML page with status 200 (no images, it would seem)',
      '<html><body>502 Bad Gateway</body></html>',
      /not an EC2 reply/,
    ],
    [
      "another service's XML",
      '<?xml version="1.0"?><ListBucketResult><Name>x</Name></ListBucketResult>',
      /not an EC2 reply/,
    ],
    ['a truncated reply', describeImages(item('x')).slice(0, 150), /DescribeImages/],
  ] as [string, Body, RegExp][])('%s', async (_name, reply, reason) => {
    const { error, ms, heapMiB } = await against(reply, () => ec2.describeImages());
    expect(isVisorError(error) ? `${error.kind}: ${error.message}` : String(error)).toMatch(/^invalidResponse: ec2: /);
    expect((error as Error).message).toMatch(reason);
    expect((error as Error).message).not.toMatch(/secret-access-key/);
    expect(ms).toBeLessThan(10_000);
    // Memory is bounded by the 64 MiB reply limit, whatever the server sends.
    expect(heapMiB).toBeLessThan(160);
  });

  it('stopped reading the huge reply at the limit', () => {
    expect(sent.bytes).toBeLessThan(128 * 1024 * 1024);
  });

  it.each([
    [
      'billion laughs',
      `<?xml version="1.0"?>${lolz}<manifest><version>&lol9;</version></manifest>`,
      /malformed|not well-formed|entit/,
    ],
    [
      'an external entity',
      `${xxe}<manifest><version>&xxe;</version></manifest>`,
      /not well-formed XML \(External entities are not supported\)/,
    ],
    ['deep nesting', `<manifest>${'<a>'.repeat(100_000)}${'</a>'.repeat(100_000)}</manifest>`, /not well-formed XML/],
    ['not a manifest', '<html/>', /malformed/],
  ])('refuses a bundle manifest with %s', (_name, xml, reason) => {
    const started = Date.now();
    let error: unknown;
    try {
      parseManifest(xml, 'bucket/image.manifest.xml');
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ kind: 'invalidResponse', message: expect.stringMatching(reason) });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
