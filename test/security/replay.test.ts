import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../support/raw-http.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * Replays of a captured, validly signed POST: refused not only by the server that saw it, but
 * after that server restarted and by a second server on the same catalog (the replay memory is
 * in the catalog). Each replay that got through would register the image again.
 */
describe('replays are refused across restarts and replicas', () => {
  let dataDir: string;
  let first: SecureServer | undefined;
  let second: SecureServer | undefined;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'visor-replay-'));
  });
  afterAll(async () => {
    await first?.close();
    await second?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** A signed POST, sent once, with every header captured as it went on the wire. */
  const capture = async (url: string, creds: SecureServer['users']['bob'], name: string) => {
    let headers: Record<string, string> = {};
    const body = Buffer.from(JSON.stringify({ image: { name, architecture: 'x86_64' } }));
    const r = await rawRequest(url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body,
      as: creds,
      tamper: (s) => (headers = { ...s.headers }),
    });
    return {
      status: r.status,
      replay: (to: string) => rawRequest(to, { method: 'POST', path: '/images', headers, body }),
    };
  };
  const count = async (url: string, creds: SecureServer['users']['admin'], name: string) => {
    const r = await rawRequest(url, { method: 'GET', path: '/images/detail', query: [['name', name]], as: creds });
    return (r.json() as { images: unknown[] }).images.length;
  };

  it('a request replayed after a restart of the server is refused', async () => {
    first = await startSecureServer({ dataDir });
    const users = first.users;
    const captured = await capture(first.url, users.bob, 'before-restart');
    expect(captured.status).toBe(201);
    expect((await captured.replay(first.url)).status).toBe(403);
    await first.close();
    first = await startSecureServer({ dataDir, users });
    const again = await captured.replay(first.url);
    expect(again.status).toBe(403);
    expect(again.json()).toMatchObject({ message: expect.stringMatching(/replayed/) });
    expect(await count(first.url, users.admin, 'before-restart')).toBe(1);
  });

  it('a request accepted by one replica is refused by another on the same catalog, both ways', async () => {
    const users = first!.users;
    second = await startSecureServer({ dataDir, users });
    const toFirst = await capture(first!.url, users.bob, 'replica-a');
    expect(toFirst.status).toBe(201);
    expect((await toFirst.replay(second.url)).status).toBe(403);
    const toSecond = await capture(second.url, users.carol, 'replica-b');
    expect(toSecond.status).toBe(201);
    expect((await toSecond.replay(first!.url)).status).toBe(403);
    // The same capture sent to both at once: exactly one of them takes it.
    const racing = await capture(first!.url, users.bob, 'raced');
    expect(racing.status).toBe(201);
    const results = await Promise.all([
      racing.replay(first!.url),
      racing.replay(second.url),
      racing.replay(second.url),
    ]);
    expect(results.map((r) => r.status)).toEqual([403, 403, 403]);
    for (const name of ['replica-a', 'replica-b', 'raced']) expect(await count(second.url, users.admin, name)).toBe(1);
  });

  it('fresh requests (new nonce, same content) still pass on both', async () => {
    const users = first!.users;
    for (const server of [first!, second!]) {
      for (let i = 0; i < 3; i++)
        expect(
          (await rawRequest(server.url, { method: 'GET', path: '/images', query: [['name', 'x']], as: users.bob }))
            .status,
        ).toBe(200);
    }
  });
});
