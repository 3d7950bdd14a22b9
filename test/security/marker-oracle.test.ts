import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest, type RawResponse } from '../support/raw-http.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * The marker oracle: paging after a private image (`?sort=X&marker=<its id>`) used to work for
 * anyone, so whether the id existed showed, and — sorting by a property and probing with public
 * images of chosen values — its name and property values could be read off in ~250 requests.
 * A marker the caller cannot see must behave exactly like one that does not exist.
 */
describe('paging markers leak nothing about images the caller cannot see', () => {
  let t: SecureServer;
  let secretId: string;
  const secret = { name: 'payroll-2026', architecture: 'x86_64', access: 'private', db_password: 'm7-hunter' };

  const post = async (as: 'bob' | 'carol', image: Record<string, unknown>) => {
    const r = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ image })),
      as: t.users[as],
    });
    expect(r.status).toBe(201);
    return (r.json() as { image: { _id: string } }).image._id;
  };
  const page = (as: 'bob' | 'carol' | 'admin', query: [string, string][]) =>
    rawRequest(t.url, { method: 'GET', path: '/images/detail', query, as: t.users[as] });
  /** The answer with what must differ between two requests (the request id) taken out. */
  const shape = (r: RawResponse, marker: string) => ({
    status: r.status,
    body: r.body
      .toString()
      .replace(marker, 'MARKER')
      .replace(/"request_id":"[0-9a-f]+"/, ''),
  });

  beforeAll(async () => {
    t = await startSecureServer();
    secretId = await post('bob', secret);
    // Carol's probes: public images whose names and property values bracket the secret's.
    for (const probe of ['a', 'm', 'p', 'pa', 'pay', 'payroll-2027', 'z'])
      await post('carol', { name: probe, architecture: 'x86_64', access: 'public', db_password: probe });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("answers a hidden image's id exactly as a random id, whatever the sort, direction and filters", async () => {
    const random = randomUUID();
    for (const sort of ['name', 'db_password', 'created_at', '_id', 'size']) {
      for (const dir of ['asc', 'desc']) {
        for (const extra of [[], [['architecture', 'x86_64']], [['db_password', 'pay']]] as [string, string][][]) {
          const query = (marker: string): [string, string][] => [
            ['sort', sort],
            ['dir', dir],
            ['limit', '1'],
            ['marker', marker],
            ...extra,
          ];
          const hidden = await page('carol', query(secretId));
          const unknown = await page('carol', query(random));
          expect(shape(hidden, secretId), `${sort} ${dir} ${JSON.stringify(extra)}`).toEqual(shape(unknown, random));
          expect(hidden.status).toBe(400);
          expect(hidden.body.toString()).not.toMatch(/payroll|m7-hunter/);
        }
      }
    }
  });

  it('the binary search over probe values learns nothing: no page follows the hidden marker', async () => {
    // What the attack compares: the page after the hidden marker. It must fail, never give a page.
    const results = new Set<number>();
    for (const sort of ['name', 'db_password'])
      results.add(
        (
          await page('carol', [
            ['sort', sort],
            ['marker', secretId],
          ])
        ).status,
      );
    expect([...results]).toEqual([400]);
  });

  it('the owner and admins still page after it (control)', async () => {
    for (const who of ['bob', 'admin'] as const) {
      const r = await page(who, [
        ['sort', 'name'],
        ['marker', secretId],
      ]);
      expect(r.status, who).toBe(200);
      expect((r.json() as { images: { name: string }[] }).images.map((i) => i.name)).toContain('z');
    }
  });
});
