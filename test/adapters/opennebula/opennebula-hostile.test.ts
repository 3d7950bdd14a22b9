import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { Deserializer } from '@foxglove/xmlrpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVisorError } from '../../../core/errors.js';
import { OneClient } from '../../../adapters/opennebula/client.js';
import { parseImage } from '../../../adapters/opennebula/schema.js';

/**
 * Hostile or broken replies from something pretending to be oned: entity expansion (billion
 * laughs), external entities, huge and deeply nested documents, garbage. Each must end as one
 * clean `invalidResponse` — quickly, without expanding anything and without memory growing
 * with what the server sends. (A bare HTTP server, not the double: the double only speaks
 * valid oned.)
 */

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler = (_req, res) => void res.end();
let server: Server;
let endpoint: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/RPC2`;
});
afterAll(
  () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
);

const escapeXml = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
const envelope = (inner: string, prolog = '') =>
  `<?xml version="1.0" ` +
  `encoding="UTF-8"?>\r\n${prolog}<methodResponse><params><param><value><array>` +
  `<data>${inner}</data></array></value></param></params></methodResponse>\r\n`;
const okString = (payload: string, prolog = '') =>
  envelope(
    `<value><boolean>1</boolean></value><value><string>${payload}</string></value><value><i4>0</i4></value>`,
    prolog,
  );
const lolz = `<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 ${Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`).join('\n ')}
]>`;

function answer(body: string | (() => Readable)): void {
  handler = (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/xml' });
    if (typeof body === 'string') res.end(body);
    else
      body()
        .on('error', () => undefined)
        .pipe(res);
  };
}

function client(maxResponseBytes = 4 * 1024 * 1024): OneClient {
  return new OneClient({
    endpoint,
    username: 'oneadmin',
    password: 'secret-password',
    timeoutMs: 10_000,
    maxResponseBytes,
  });
}

async function refused(promise: Promise<unknown>, pattern?: RegExp): Promise<string> {
  const started = Date.now();
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isVisorError(error) ? `${error.kind}: ${error.message}` : String(error)).toMatch(/^invalidResponse: /);
  if (pattern) expect((error as Error).message).toMatch(pattern);
  expect((error as Error).message).not.toMatch(/secret-password/);
  expect(Date.now() - started).toBeLessThan(5_000);
  return (error as Error).message;
}

describe('OpenNebula client: hostile XML is refused cleanly', () => {
  it('uses an XML-RPC parser that leaves DTD entities unexpanded (sax)', async () => {
    const external = '<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>';
    expect(await new Deserializer().deserializeMethodResponse(okString('&lol9;|&lt;ok&gt;', lolz))).toEqual([
      true,
      '&lol9;|<ok>',
      0,
    ]);
    expect(await new Deserializer().deserializeMethodResponse(okString('&xxe;', external))).toEqual([true, '&xxe;', 0]);
  });

  it('does not expand a billion-laughs DTD in the XML-RPC envelope', async () => {
    answer(okString('&lol9;', lolz));
    const c = client();
    try {
      await refused(c.image(1), /IMAGE document is not acceptable XML|not an XML document|malformed/);
      // An entity in a structural place is not expanded either: "&one;" is no boolean.
      answer(
        envelope(
          '<value><boolean>&one;</boolean></value><value><i4>1</i4></value><value><i4>0</i4></value>',
          '<!DOCTYPE m [<!ENTITY one "1">]>',
        ),
      );
      await refused(c.deleteImage(1), /not XML-RPC|malformed/);
    } finally {
      c.close();
    }
  });

  it('refuses a billion-laughs DTD inside the IMAGE document', async () => {
    const image = `<?xml version="1.0"?>${lolz}<IMAGE><ID>1</ID><NAME>&lol9;</NAME></IMAGE>`;
    answer(okString(escapeXml(image)));
    const c = client();
    const heap = process.memoryUsage().heapUsed;
    try {
      await refused(c.image(1), /declares DTD entities/);
    } finally {
      c.close();
    }
    expect(process.memoryUsage().heapUsed - heap).toBeLessThan(64 * 1024 * 1024);
    expect(() => parseImage(image)).toThrow(/declares DTD entities/);
  });

  it('never resolves external entities, in the envelope or in the document', async () => {
    answer(okString('&xxe;', '<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'));
    const c = client();
    try {
      await refused(c.image(1));
      answer(
        okString(
          escapeXml('<!DOCTYPE IMAGE [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><IMAGE><NAME>&xxe;</NAME></IMAGE>'),
        ),
      );
      await refused(c.image(1), /External entities are not supported/);
    } finally {
      c.close();
    }
  });

  it('stops reading a reply larger than the limit, however much the server sends', async () => {
    let sent = 0;
    answer(() =>
      Readable.from(
        (function* () {
          yield '<?xml version="1.0"?><methodResponse><params><param><value><array><data><value><string>';
          // 256 MiB of "x" if nobody stops it.
          for (let i = 0; i < 4096; i++) {
            sent += 65536;
            yield 'x'.repeat(65536);
          }
        })(),
      ),
    );
    const c = client(2 * 1024 * 1024);
    const heap = process.memoryUsage().heapUsed;
    try {
      await refused(c.imagePool('mine'), /larger than the configured limit/);
    } finally {
      c.close();
    }
    expect(sent).toBeLessThan(256 * 1024 * 1024);
    expect(process.memoryUsage().heapUsed - heap).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses deeply nested, truncated, polluting and non-XML documents', async () => {
    const c = client();
    try {
      answer(okString(escapeXml(`<IMAGE>${'<A>'.repeat(200)}x${'</A>'.repeat(200)}</IMAGE>`)));
      await refused(c.image(1), /nested/);
      answer(okString(escapeXml('<IMAGE><ID>1</ID>')));
      await refused(c.image(1), /Unclosed/);
      answer(okString(escapeXml('<IMAGE><__proto__><polluted>1</polluted></__proto__></IMAGE>')));
      await refused(c.image(1));
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
      answer('<html><body>502 Bad Gateway</body></html>');
      await refused(c.image(1), /not XML-RPC/);
    } finally {
      c.close();
    }
  });

  it('refuses replies of the wrong shape and IMAGE documents that break the schema, naming the field', async () => {
    const c = client();
    try {
      answer(envelope('<value><boolean>1</boolean></value>'));
      await refused(c.image(1), /reply to one\.image\.info is malformed/);
      answer(envelope('<value><string>yes</string></value><value><i4>1</i4></value><value><i4>0</i4></value>'));
      await refused(c.deleteImage(1), /malformed/);
      answer(
        envelope(
          '<value><boolean>1</boolean></value><value><string>not a number</string></value><value><i4>0</i4></value>',
        ),
      );
      await refused(c.deleteImage(1), /returned string, expected an object id/);
      answer(okString(escapeXml('<IMAGE><ID>one</ID></IMAGE>')));
      await refused(c.image(1), /IMAGE document is malformed: IMAGE\.ID: must be an integer/);
    } finally {
      c.close();
    }
  });
});
