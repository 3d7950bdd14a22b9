import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../support/raw-http.js';
import { rawExchange, signedHead } from '../support/hostile-http.js';
import { recordingLogger } from '../support/recording-logger.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * A hostile http upstream answers range requests with more (or fewer) bytes than asked, with
 * lying Content-Range and Content-Length, or with a second HTTP response smuggled after the
 * body. visor must never send its client more or fewer bytes than it declares: it refuses
 * before answering when it can tell, and otherwise closes the connection mid-body and logs
 * the error. No forged response ever reaches the client.
 */
const data = randomBytes(4096);
const FORGED =
  'HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 25\r\nx-forged: yes\r\n\r\n' +
  '<script>forged</script>\r\n';

type Behaviour = (range: { start: number; end: number } | undefined, socket: Socket) => void;

const respond = (socket: Socket, status: string, headers: Record<string, string>, body: Buffer | string) => {
  socket.end(
    Buffer.concat([
      Buffer.from(
        [
          `HTTP/1.1 ${status}`,
          ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
          'connection: close',
          '',
          '',
        ].join('\r\n'),
      ),
      typeof body === 'string' ? Buffer.from(body, 'latin1') : body,
    ]),
  );
};

/**
 * Per path, how the upstream answers a GET with a Range once it has turned hostile; HEAD always
 * tells the true size. Until then (while visor inspects the content at registration) it answers
 * as the honest one does: an upstream that lies then is refused at registration (see the last test).
 */
const behaviours: Record<string, Behaviour> = {
  // Content-Length bigger than the range asked, Content-Range honest: the extra bytes are a forged response.
  '/longer-length': (r, s) =>
    respond(
      s,
      '206 Partial Content',
      {
        'content-range': `bytes ${r!.start}-${r!.end}/${data.length}`,
        'content-length': String(r!.end - r!.start + 1 + FORGED.length),
      },
      Buffer.concat([data.subarray(r!.start, r!.end + 1), Buffer.from(FORGED)]),
    ),
  // Content-Range claims a bigger range than asked.
  '/wider-range': (r, s) =>
    respond(
      s,
      '206 Partial Content',
      {
        'content-range': `bytes ${r!.start}-${r!.end + 500}/${data.length}`,
        'content-length': String(r!.end - r!.start + 501),
      },
      data.subarray(r!.start, r!.end + 501),
    ),
  // Another object's size.
  '/other-total': (r, s) =>
    respond(
      s,
      '206 Partial Content',
      { 'content-range': `bytes ${r!.start}-${r!.end}/999999`, 'content-length': String(r!.end - r!.start + 1) },
      data.subarray(r!.start, r!.end + 1),
    ),
  // No Content-Range at all.
  '/no-range-header': (r, s) =>
    respond(
      s,
      '206 Partial Content',
      { 'content-length': String(r!.end - r!.start + 1) },
      data.subarray(r!.start, r!.end + 1),
    ),
  // Chunked (no length to check up front) with more bytes than the range: caught while streaming.
  '/chunked-longer': (r, s) => {
    const body = Buffer.concat([data.subarray(r!.start, r!.end + 1), Buffer.from(FORGED)]);
    respond(
      s,
      '206 Partial Content',
      { 'content-range': `bytes ${r!.start}-${r!.end}/${data.length}`, 'transfer-encoding': 'chunked' },
      `${body.length.toString(16)}\r\n${body.toString('latin1')}\r\n0\r\n\r\n`,
    );
  },
  // Chunked with fewer bytes than the range.
  '/chunked-shorter': (r, s) => {
    const body = data.subarray(r!.start, r!.start + 3);
    respond(
      s,
      '206 Partial Content',
      { 'content-range': `bytes ${r!.start}-${r!.end}/${data.length}`, 'transfer-encoding': 'chunked' },
      `${body.length.toString(16)}\r\n${body.toString('latin1')}\r\n0\r\n\r\n`,
    );
  },
  // Ignores Range and sends everything, but claims a different length than HEAD did.
  '/ignores-range-wrong-length': (_r, s) =>
    respond(
      s,
      '200 OK',
      { 'content-length': String(data.length + FORGED.length) },
      Buffer.concat([data, Buffer.from(FORGED)]),
    ),
  // An honest server (the control).
  '/honest': (r, s) =>
    r
      ? respond(
          s,
          '206 Partial Content',
          {
            'content-range': `bytes ${r.start}-${r.end}/${data.length}`,
            'content-length': String(r.end - r.start + 1),
          },
          data.subarray(r.start, r.end + 1),
        )
      : respond(s, '200 OK', { 'content-length': String(data.length) }, data),
  // Whole GET: more than its own Content-Length, chunked instead, or a different size than registered.
  '/whole-chunked-longer': (r, s) =>
    r
      ? behaviours['/chunked-longer']!(r, s)
      : respond(
          s,
          '200 OK',
          { 'transfer-encoding': 'chunked' },
          `${(data.length + 10).toString(16)}\r\n` +
            `${Buffer.concat([data, Buffer.alloc(10, 65)]).toString('latin1')}\r\n0\r\n\r\n`,
        ),
  '/whole-grew': (_r, s) =>
    respond(s, '200 OK', { 'content-length': String(data.length + 100) }, Buffer.concat([data, Buffer.alloc(100, 66)])),
};

/** Whether the upstream lies (see behaviours); paths with `hostile-now` in their query always do. */
let hostile = false;

function upstream(): Promise<{ server: Server; base: string }> {
  const server = createServer((socket) => {
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const [requestLine = '', ...lines] = head.split('\r\n');
      const [method = '', path = ''] = requestLine.split(' ');
      const rangeLine = lines.find((l) => l.toLowerCase().startsWith('range:'));
      const m = /bytes=(\d+)-(\d+)/.exec(rangeLine ?? '');
      const behaviour = behaviours[path.split('?')[0]!];
      if (!behaviour) return respond(socket, '404 Not Found', { 'content-length': '0' }, '');
      // HEAD tells the registered size (the whole-grew path grows after registration).
      if (method === 'HEAD') return respond(socket, '200 OK', { 'content-length': String(data.length) }, '');
      const answer = hostile || path.includes('hostile-now') ? behaviour : behaviours['/honest']!;
      answer(m ? { start: Number(m[1]), end: Number(m[2]) } : undefined, socket);
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.2', () =>
      resolve({ server, base: `http://127.0.0.2:${(server.address() as AddressInfo).port}` }),
    ),
  );
}

describe('range and length answers of an http upstream are checked before and while they are passed on', () => {
  let t: SecureServer;
  let up: { server: Server; base: string };
  const log = recordingLogger();
  const logger = log;
  const ids = new Map<string, string>();

  beforeAll(async () => {
    up = await upstream();
    t = await startSecureServer({
      logger,
      yaml: [
        'stores:',
        '  local: { type: file }',
        `  web: { type: http, options: { allowNetworks: ['127.0.0.2/32'] } }`,
        'defaultStore: local',
        'server: { host: 127.0.0.1 }',
      ].join('\n'),
    });
    for (const path of Object.keys(behaviours)) {
      const body = Buffer.from(
        JSON.stringify({
          image: {
            name: `up${path.replace(/\//g, '-')}`,
            architecture: 'x86_64',
            access: 'public',
            location: `${up.base}${path}`,
          },
        }),
      );
      const r = await rawRequest(t.url, {
        method: 'POST',
        path: '/images',
        headers: { 'content-type': 'application/json' },
        body,
        as: t.users.bob,
      });
      expect(r.status, path).toBe(201);
      ids.set(path, (r.json() as { image: { _id: string } }).image._id);
    }
    hostile = true;
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => up.server.close(r));
  });

  /** A signed GET on a raw socket: everything the server writes on the connection, as the client sees it. */
  const fetchRaw = (path: string, range?: string, keepAlive = false) => {
    const headers = { ...(range ? { range } : {}), ...(keepAlive ? {} : { connection: 'close' }) };
    const head = signedHead(
      t.url,
      t.users.carol,
      'GET',
      `/images/${ids.get(path)!}`,
      headers,
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    return rawExchange(t.url, head, { waitMs: 3000 });
  };
  const statusLines = (text: string) => text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
  const declaredAndBody = (text: string) => {
    const at = text.indexOf('\r\n\r\n');
    const length = Number(/content-length: (\d+)/i.exec(text.slice(0, at))?.[1]);
    return { length, body: Buffer.from(text.slice(at + 4), 'latin1') };
  };

  it('serves an honest upstream whole and in ranges (control)', async () => {
    const whole = await fetchRaw('/honest');
    expect(whole.status).toBe(200);
    expect(declaredAndBody(whole.text).body.equals(data)).toBe(true);
    const part = await fetchRaw('/honest', 'bytes=100-199');
    expect(part.status).toBe(206);
    expect(declaredAndBody(part.text).body.equals(data.subarray(100, 200))).toBe(true);
  });

  it.each(['/longer-length', '/wider-range', '/other-total', '/no-range-header', '/ignores-range-wrong-length'])(
    '%s: refused before a byte is sent (502, generic message), no forged response',
    async (path) => {
      const r = await fetchRaw(path, 'bytes=100-199');
      expect(r.status).toBe(502);
      expect(statusLines(r.text)).toHaveLength(1);
      expect(r.text).not.toContain('x-forged');
      expect(r.text).not.toContain('127.0.0.2');
    },
  );

  it.each([
    ['/chunked-longer', 'bytes=100-199'],
    ['/chunked-shorter', 'bytes=100-199'],
    ['/whole-chunked-longer', undefined],
  ])(
    '%s %s: never more (or fewer) bytes than declared; the connection is closed and the error logged',
    async (path, range) => {
      const logged = log.lines.length;
      // Keep-alive asked for: only the server's own decision closes the connection.
      const r = await fetchRaw(path, range, true);
      expect(statusLines(r.text)).toHaveLength(1);
      expect(r.text).not.toContain('x-forged');
      if (r.status === 206 || r.status === 200) {
        expect(r.closedByServer).toBe(true);
        const { length, body } = declaredAndBody(r.text);
        // Cut short of the declared length: the client can tell the body is incomplete.
        expect(body.length).toBeLessThan(length);
        await new Promise((done) => setTimeout(done, 100));
        expect(log.lines.slice(logged).some((l) => l.level === 'error' && /the declared bytes/.test(l.message))).toBe(
          true,
        );
      } else {
        expect(r.status).toBe(502);
      }
    },
  );

  it(
    'an upstream that lies while visor inspects it at ' + 'registration is refused then (502), keeping nothing',
    async () => {
      for (const path of ['/longer-length', '/wider-range', '/other-total', '/chunked-longer', '/chunked-shorter']) {
        const name = `up-hostile-now${path.replace(/\//g, '-')}`;
        const location = `${up.base}${path}?hostile-now`;
        const r = await rawRequest(t.url, {
          method: 'POST',
          path: '/images',
          headers: { 'content-type': 'application/json' },
          body: Buffer.from(JSON.stringify({ image: { name, architecture: 'x86_64', access: 'public', location } })),
          as: t.users.bob,
        });
        expect(r.status, path).toBe(502);
        expect(r.body.toString(), path).not.toContain('127.0.0.2');
        const listed = await rawRequest(t.url, {
          method: 'GET',
          path: '/images',
          query: [['name', name]],
          as: t.users.admin,
        });
        expect((listed.json() as { images: unknown[] }).images, path).toEqual([]);
      }
    },
  );

  it('an upstream object that changed size since registration is refused (502), not served', async () => {
    const r = await fetchRaw('/whole-grew');
    expect(r.status).toBe(502);
    expect(statusLines(r.text)).toHaveLength(1);
  });
});
