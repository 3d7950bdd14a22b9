import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import axios from 'axios';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpError } from '../../core/wire/http.js';

/**
 * Answers cut off in the middle of their body (the fault suite's mid-response resets): the status
 * line said 200 or 201, but the answer never arrived whole. That is a lost connection — retryable
 * `unavailable`, or `timeout` when the bytes stopped coming — never an `invalidResponse` (which is
 * terminal: a sync would give up on a listing, or leave a half-created image behind).
 */
describe('an answer cut off mid-body', () => {
  let server: Server;
  let base: string;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const body = JSON.stringify({ images: [], padding: 'x'.repeat(4096) });
      if (req.url === '/cut') {
        res.writeHead(req.method === 'POST' ? 201 : 200, {
          'content-type': 'application/json',
          'content-length': body.length,
        });
        res.write(body.slice(0, 100), () => res.socket?.destroy());
      } else if (req.url === '/stall') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.write(body.slice(0, 100));
      } else if (req.url === '/redirect') {
        res.writeHead(302, { location: '/elsewhere', 'content-length': 0 });
        res.end();
      } else {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 503, title: 'Service Unavailable', message: 'try later' }));
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => expect.fail('the request should have failed'),
      (error: unknown) => error,
    );

  it('is unavailable (retryable) when the connection drops mid-body, for a listing and for a create', async () => {
    const listed = httpError('Glance: listing images', await failure(axios.get(`${base}/cut`, { maxRedirects: 0 })));
    expect(listed.kind).toBe('unavailable');
    expect(listed.message).toMatch(/^Glance: listing images: the answer \(HTTP 200\) was cut off: /);
    const created = httpError(
      'Glance: creating image "x"',
      await failure(axios.post(`${base}/cut`, {}, { maxRedirects: 0, validateStatus: (s) => s === 201 || s === 200 })),
    );
    expect(created.kind).toBe('unavailable');
    expect(created.message).toMatch(/the answer \(HTTP 201\) was cut off/);
  });

  it('is a timeout when the body stops coming', async () => {
    const stalled = httpError(
      'Glance: reading image x',
      await failure(axios.get(`${base}/stall`, { timeout: 300, maxRedirects: 0 })),
    );
    expect(stalled.kind).toBe('timeout');
    expect(stalled.message).toMatch(
      /^Glance: reading image x: (the answer \(HTTP 200\) was cut off: )?no answer in time/,
    );
  });

  it('still maps statuses the request refuses by the status', async () => {
    expect(httpError('x', await failure(axios.get(`${base}/redirect`, { maxRedirects: 0 }))).kind).toBe(
      'invalidResponse',
    );
    const busy = httpError('x', await failure(axios.get(`${base}/busy`, { maxRedirects: 0 })));
    expect(busy).toMatchObject({ kind: 'unavailable', message: 'x: HTTP 503: try later' });
  });
});
