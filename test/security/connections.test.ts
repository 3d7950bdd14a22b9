import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONTENT_HASH_HEADER,
  DECODED_LENGTH_HEADER,
  signRequest,
  STREAMING_PAYLOAD,
  TRAILER_SIGNATURE_HEADER,
  trailerSignature,
} from '../../core/auth/signing.js';
import { healthy, kept } from '../support/hostile-http.js';
import { rawRequest } from '../support/raw-http.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * Slow and many connections. Deadlines (request head, metadata body), a minimum upload rate,
 * a cap on connections and one per client address: an attacker holding connections open, or
 * trickling bodies, is cut off, keeps nothing, and everyone else is served meanwhile.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Held {
  socket: Socket;
  /** Everything the server sent. */
  text: () => string;
  /** Resolves with the ms from connect to close when the server closes (or resets) it. */
  closed: Promise<number>;
}

/** A raw connection from `from` (a loopback address other than the test's own: another client). */
function hold(url: string, from: string, write?: (socket: Socket) => void): Promise<Held> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    let text = '';
    const started = Date.now();
    const socket = connect({ host: hostname, port: Number(port), localAddress: from }, () => {
      write?.(socket);
      resolve({ socket, text: () => text, closed });
    });
    const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now() - started)));
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
  });
}

const within = <T>(promise: Promise<T>, ms: number, what: string) =>
  Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`${what}: not within ${ms} ms`)))]);

describe('connection limits', () => {
  let t: SecureServer;
  let baseline: Awaited<ReturnType<typeof kept>>;
  const hostile = () => ({ server: t.server, url: t.url, dataDir: t.dataDir, users: t.users, close: t.close });

  beforeAll(async () => {
    t = await startSecureServer({
      yaml: [
        'stores:',
        '  local: { type: file }',
        'server:',
        '  host: 127.0.0.1',
        '  limits:',
        '    { headerTimeoutSeconds: 2, bodyTimeoutSeconds: 2, minUploadBytesPerSecond: 4096,',
        '      uploadRateWindowSeconds: 2, maxConnections: 60, maxConnectionsPerAddress: 20 }',
      ].join('\n'),
    });
    baseline = await kept(hostile());
  });
  afterAll(async () => {
    await t?.close();
  });

  const nothingKept = async () => {
    const end = Date.now() + 10_000;
    while (JSON.stringify(await kept(hostile())) !== JSON.stringify(baseline)) {
      if (Date.now() > end)
        throw new Error(`something was kept: ${JSON.stringify(await kept(hostile()))} vs ${JSON.stringify(baseline)}`);
      await sleep(100);
    }
  };

  it('half-open connections that never send a byte are closed after the header deadline', async () => {
    const silent = await Promise.all(Array.from({ length: 15 }, () => hold(t.url, '127.0.0.3')));
    expect(await healthy(hostile())).toBeLessThan(2000);
    const ms = await within(Promise.all(silent.map((c) => c.closed)), 8000, 'silent connections closed');
    for (const m of ms) {
      expect(m).toBeGreaterThanOrEqual(1500);
      expect(m).toBeLessThan(6000);
    }
  });

  it('headers sent a line at a time (slowloris) are cut at the header deadline', async () => {
    const loris = await Promise.all(
      Array.from({ length: 10 }, () =>
        hold(t.url, '127.0.0.4', (socket) => {
          socket.write('GET /images HTTP/1.1\r\nhost: x\r\n');
          const timer = setInterval(() => socket.writable && socket.write(`x-loris: ${'a'.repeat(5)}\r\n`), 200);
          socket.once('close', () => clearInterval(timer));
        }),
      ),
    );
    const ms = await within(Promise.all(loris.map((c) => c.closed)), 8000, 'slowloris connections closed');
    for (const m of ms) expect(m).toBeLessThan(6000);
  });

  it('one address gets at most maxConnectionsPerAddress; the rest are refused, others served', async () => {
    const held = await Promise.all(Array.from({ length: 26 }, () => hold(t.url, '127.0.0.5')));
    await sleep(300);
    const refused = held.filter((c) => /^HTTP\/1\.1 503/.test(c.text()));
    expect(refused).toHaveLength(6);
    for (const c of refused) expect(c.text()).toMatch(/too many connections/);
    // Someone else is served meanwhile.
    expect(await healthy(hostile())).toBeLessThan(2000);
    for (const c of held) c.socket.destroy();
    await sleep(200);
    // The slots are free again.
    const again = await hold(t.url, '127.0.0.5', (s) =>
      s.write('GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'),
    );
    await within(again.closed, 5000, 'health answered');
    expect(again.text()).toMatch(/^HTTP\/1\.1 200/);
  });

  it('connections beyond maxConnections are refused, whatever their addresses; the server recovers', async () => {
    const held: Held[] = [];
    for (let a = 10; a < 14; a++)
      held.push(...(await Promise.all(Array.from({ length: 18 }, () => hold(t.url, `127.0.0.${a}`)))));
    await sleep(300);
    const refused = held.filter((c) => /^HTTP\/1\.1 503/.test(c.text()));
    const open = await new Promise<number>((r) => t.server.app.server.getConnections((_e, n) => r(n)));
    // The test's own keep-alive connections count too: at least 12 of the 72 are refused, never more than 60 open.
    expect(open).toBeLessThanOrEqual(60);
    expect(refused.length).toBeGreaterThanOrEqual(72 - 60);
    expect(refused.length).toBeLessThanOrEqual(72 - 60 + 2);
    for (const c of held) c.socket.destroy();
    await sleep(300);
    expect(await healthy(hostile())).toBeLessThan(2000);
  });

  it('a signed JSON body sent one byte at a time is cut at the body deadline (408), nothing kept', async () => {
    const body = Buffer.from(JSON.stringify({ image: { name: 'dribble', architecture: 'x86_64' } }));
    const headers = signRequest(t.users.bob.accessKey, t.users.bob.secretKey, {
      method: 'POST',
      path: '/images',
      query: [],
      headers: {
        'content-type': 'application/json',
        'content-length': String(body.length),
        [CONTENT_HASH_HEADER]: createHash('sha256').update(body).digest('hex'),
      },
    });
    const head = [
      'POST /images HTTP/1.1',
      'host: x',
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      '',
      '',
    ].join('\r\n');
    const c = await hold(t.url, '127.0.0.6', (socket) => {
      socket.write(head);
      let i = 0;
      const timer = setInterval(
        () => (i < body.length && socket.writable ? socket.write(body.subarray(i, ++i)) : clearInterval(timer)),
        200,
      );
      socket.once('close', () => clearInterval(timer));
    });
    const ms = await within(c.closed, 8000, 'dribbling body closed');
    expect(c.text()).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeGreaterThanOrEqual(1800);
    expect(ms).toBeLessThan(5000);
    await nothingKept();
  });

  /** A signed streamed upload whose body `send` writes (chunk framing included), then the honest trailers. */
  const streamedHead = (name: string, size: number) => {
    const headers = signRequest(t.users.bob.accessKey, t.users.bob.secretKey, {
      method: 'POST',
      path: '/images',
      query: [],
      headers: {
        'content-type': 'application/octet-stream',
        'transfer-encoding': 'chunked',
        [CONTENT_HASH_HEADER]: STREAMING_PAYLOAD,
        [DECODED_LENGTH_HEADER]: String(size),
        'x-image-meta-name': name,
        'x-image-meta-architecture': 'x86_64',
      },
    });
    return {
      head: [
        'POST /images HTTP/1.1',
        'host: x',
        'connection: close',
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        '',
        '',
      ].join('\r\n'),
      signature: /Signature=([0-9a-f]{64})/.exec(headers['authorization']!)![1]!,
    };
  };
  const trailer = (signature: string, data: Buffer) => {
    const digest = createHash('sha256').update(data).digest('hex');
    const signed = trailerSignature(t.users.bob.secretKey, signature, digest);
    return `0\r\n${CONTENT_HASH_HEADER}: ${digest}\r\n${TRAILER_SIGNATURE_HEADER}: ${signed}\r\n\r\n`;
  };

  it('an upload trickling a byte at a time is dropped: slower than the minimum rate (408), nothing kept', async () => {
    const { head } = streamedHead('trickle', 10_000);
    const c = await hold(t.url, '127.0.0.7', (socket) => {
      socket.write(head);
      const timer = setInterval(() => socket.writable && socket.write('1\r\nz\r\n'), 250);
      socket.once('close', () => clearInterval(timer));
    });
    // The idle timeout (120 s) never fires: a byte comes every 250 ms. The rate check does.
    await sleep(500);
    expect(await healthy(hostile())).toBeLessThan(2000);
    const ms = await within(c.closed, 10_000, 'trickling upload dropped');
    expect(c.text()).toMatch(/^HTTP\/1\.1 408[\s\S]*too slow/);
    expect(ms).toBeGreaterThanOrEqual(1800);
    await nothingKept();
  });

  it('an upload slow but above the minimum rate completes (control)', async () => {
    const data = randomBytes(20 * 1024);
    const { head, signature } = streamedHead('steady', data.length);
    const c = await hold(t.url, '127.0.0.8', (socket) => {
      socket.write(head);
      let at = 0;
      // 2 KiB every 250 ms: 8 KiB/s, twice the minimum, for 2.5 s (longer than one window).
      const timer = setInterval(() => {
        if (!socket.writable) return clearInterval(timer);
        const part = data.subarray(at, at + 2048);
        at += part.length;
        socket.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
        if (at >= data.length) {
          clearInterval(timer);
          socket.write(trailer(signature, data));
        }
      }, 250);
    });
    await within(c.closed, 15_000, 'steady upload answered');
    expect(c.text()).toMatch(/^HTTP\/1\.1 201/);
    const listed = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: [['name', 'steady']],
      as: t.users.bob,
    });
    expect((listed.json() as { images: { size: number }[] }).images).toEqual([
      expect.objectContaining({ size: data.length }),
    ]);
  });
});
