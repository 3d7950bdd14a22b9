import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import {
  healthy,
  kept,
  rawExchange,
  signedHead,
  startHostileServer,
  type HostileServer,
} from '../support/hostile-http.js';
import { rawRequest, type RawResponse } from '../support/raw-http.js';

/**
 * Hostile metadata, bodies, headers and query strings against a real image service: each is a
 * clear 4xx in VISOR's error body ({code, message}), nothing is registered (catalog and store
 * unchanged) and the service keeps answering (a signed request after each case succeeds).
 * Connection-level abuse (lying Content-Length, endless bodies, slowloris) is in http.test.ts.
 */
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const json = (body: unknown) => Buffer.from(JSON.stringify(body));
const jsonHeaders = { 'content-type': 'application/json' };
const octet = { 'content-type': 'application/octet-stream' };
const named = { 'x-image-meta-name': 'hostile', 'x-image-meta-architecture': 'x86_64' };

describe('hostile API input: a clear 4xx, nothing registered, the service still answers', () => {
  let t: HostileServer;
  let imagePath: string;
  const data = randomBytes(100_000);

  beforeAll(async () => {
    t = await startHostileServer();
    const client = new VisorClient({
      url: t.url,
      accessKey: t.users.bob.accessKey,
      secretKey: t.users.bob.secretKey,
      source: 'test',
    });
    const image = await client.add(
      { name: 'ranged', architecture: 'x86_64', format: 'raw' },
      { stream: Readable.from([data]), size: data.length },
    );
    imagePath = `/images/${String(image['_id'])}`;
  });
  afterAll(async () => {
    await t?.close();
  });

  const post = (body: Buffer, headers: Record<string, string> = jsonHeaders) =>
    rawRequest(t.url, { method: 'POST', path: '/images', headers, body, as: t.users.bob });
  const postText = (text: string) => post(Buffer.from(text));
  const postImage = (image: Record<string, unknown>) => post(json({ image }));
  const upload = (headers: Record<string, string>) =>
    post(Buffer.from('not much of an image'), { ...octet, ...headers });
  const list = (query: [string, string][]) =>
    rawRequest(t.url, { method: 'GET', path: '/images', query, as: t.users.bob });
  const deep = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
  const many = (n: number, make: (i: number) => [string, string]) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => make(i)));

  const cases: [string, () => Promise<RawResponse>, number, RegExp][] = [
    // Prototype pollution: keys that are Object's own names must be plain, refused keys.
    [
      'a "__proto__" metadata key',
      () => postText('{"image":{"name":"p","architecture":"x86_64","__proto__":{"admin":true,"owner":"root"}}}'),
      400,
      /"__proto__" is not a valid attribute/,
    ],
    [
      'a "__proto__" wrapper around the image',
      () => postText('{"__proto__":{"image":{"name":"p","architecture":"x86_64"}}}'),
      400,
      /"__proto__" is not a valid attribute/,
    ],
    [
      'a "constructor" object as a property',
      () => postText('{"image":{"name":"p","architecture":"x86_64","constructor":{"prototype":{"admin":true}}}}'),
      400,
      /custom property constructor must be text/,
    ],
    [
      'an x-image-meta-__proto__ header',
      () => upload({ ...named, 'x-image-meta-__proto__': 'x' }),
      400,
      /"__proto__" is not a valid attribute/,
    ],
    ['sort=__proto__', () => list([['sort', '__proto__']]), 400, /"__proto__" is not a valid attribute/],
    ['sort=constructor.prototype', () => list([['sort', 'constructor.prototype']]), 400, /not a valid attribute/],
    ['a __proto__ filter', () => list([['__proto__', 'x']]), 400, /"__proto__" is not a valid attribute/],
    // JSON that says two things, or is not text.
    [
      'duplicate JSON keys',
      () => postText('{"image":{"name":"a","architecture":"x86_64","name":"b"}}'),
      400,
      /gives the key "name" twice/,
    ],
    [
      'duplicate keys at the top',
      () => postText('{"image":{"name":"a","architecture":"x86_64"},"image":{"name":"b","architecture":"x86_64"}}'),
      400,
      /gives the key "image" twice/,
    ],
    [
      'duplicate keys hidden by escapes',
      () => postText('{"image":{"name":"a","architecture":"x86_64","n\\u0061me":"b"}}'),
      400,
      /gives the key "name" twice/,
    ],
    [
      'invalid UTF-8 in a JSON body',
      () =>
        post(
          Buffer.concat([
            Buffer.from('{"image":{"name":"a'),
            Buffer.from([0xff, 0xfe, 0xc3]),
            Buffer.from('","architecture":"x86_64"}}'),
          ]),
        ),
      400,
      /not valid UTF-8/,
    ],
    [
      'a lone surrogate in a name',
      () => postText('{"image":{"name":"a\\ud800b","architecture":"x86_64"}}'),
      400,
      /unpaired surrogates/,
    ],
    [
      'a lone surrogate in a property',
      () => postText('{"image":{"name":"a","architecture":"x86_64","note":"x\\udc00"}}'),
      400,
      /properties\.note: must be valid Unicode/,
    ],
    [
      'a NUL byte in a name',
      () => postText('{"image":{"name":"a\\u0000b","architecture":"x86_64"}}'),
      400,
      /control characters/,
    ],
    [
      'a percent-encoded NUL in a name header',
      () => upload({ ...named, 'x-image-meta-name': 'a%00b' }),
      400,
      /control characters/,
    ],
    [
      'a NUL byte in a tag',
      () => postImage({ name: 'a', architecture: 'x86_64', tags: ['ok', 'b\u0000d'] }),
      400,
      /tags\[1\]: must not contain control characters/,
    ],
    [
      'deeply nested JSON (100,000 arrays)',
      () => postText(`{"image":${'['.repeat(100_000)}${']'.repeat(100_000)}}`),
      400,
      /"image" must be an object/,
    ],
    [
      'a deeply nested property value',
      () => postText(`{"image":{"name":"a","architecture":"x86_64","p":${deep(5000)}}}`),
      400,
      /custom property p must be text/,
    ],
    ['JSON null (no metadata at all)', () => postText('null'), 400, /name: .*expected string.*architecture/],
    ['a JSON string', () => postText('"image"'), 400, /must be an object/],
    // Numbers out of range and wrong types, each named.
    [
      'a number beyond double range',
      () => postText('{"image":{"name":"a","architecture":"x86_64","min_ram":1e400}}'),
      400,
      /minRam: .*Infinity/,
    ],
    [
      'a number beyond 2^53',
      () => postImage({ name: 'a', architecture: 'x86_64', min_disk: 2 ** 64 }),
      400,
      /minDisk: .*(<=9007199254740991|too big)/i,
    ],
    [
      'a negative size',
      () => postImage({ name: 'a', architecture: 'x86_64', min_disk: -1 }),
      400,
      /minDisk: must not be negative/,
    ],
    [
      'a fractional size',
      () => postImage({ name: 'a', architecture: 'x86_64', min_ram: 0.5 }),
      400,
      /minRam: must be an integer/,
    ],
    [
      'a negative size header',
      () => upload({ ...named, 'x-image-meta-min_disk': '-5' }),
      400,
      /minDisk: must not be negative/,
    ],
    [
      'a 23-digit size header',
      () => upload({ ...named, 'x-image-meta-min_ram': '99999999999999999999999' }),
      400,
      /minRam/,
    ],
    [
      'a size the client may not set',
      () => upload({ ...named, 'x-image-meta-size': '-5' }),
      400,
      /size is set by visor/,
    ],
    ['a name that is a number', () => postImage({ name: 5, architecture: 'x86_64' }), 400, /name: .*expected string/],
    [
      'a name that is an array',
      () => postImage({ name: ['a'], architecture: 'x86_64' }),
      400,
      /name: .*expected string/,
    ],
    ['an architecture that is an object', () => postImage({ name: 'a', architecture: { x: 1 } }), 400, /architecture/],
    [
      'tags that are a string',
      () => postImage({ name: 'a', architecture: 'x86_64', tags: 'a,b' }),
      400,
      /tags: .*expected array/,
    ],
    [
      'tags that are numbers and objects',
      () => postImage({ name: 'a', architecture: 'x86_64', tags: [1, {}] }),
      400,
      /tags\[0\].*tags\[1\]/,
    ],
    [
      'members that are an object',
      () => postImage({ name: 'a', architecture: 'x86_64', access: 'shared', members: { bob: 1 } }),
      400,
      /members: .*expected array/,
    ],
    [
      'an os_distro that is an object',
      () => postImage({ name: 'a', architecture: 'x86_64', os_distro: { name: 'debian' } }),
      400,
      /os_distro must be text/,
    ],
    ['access that is a number', () => postImage({ name: 'a', architecture: 'x86_64', access: 1 }), 400, /access/],
    [
      'a checksum that is a number',
      () => postImage({ name: 'a', architecture: 'x86_64', checksum: 123 }),
      400,
      /checksum must be a hex string/,
    ],
    [
      'a location that is an object',
      () => postImage({ name: 'a', architecture: 'x86_64', location: { url: 'http://x' } }),
      400,
      /location must be a URL/,
    ],
    // Overlong names and values, too many of everything.
    [
      'a 100,000-character name',
      () => postImage({ name: 'x'.repeat(100_000), architecture: 'x86_64' }),
      400,
      /name: must be at most 255 characters/,
    ],
    [
      'a 1,000-character property name',
      () => postImage({ name: 'a', architecture: 'x86_64', [`k${'x'.repeat(1000)}`]: 'v' }),
      400,
      /is not a valid attribute or property name/,
    ],
    [
      'a 70,000-character property value',
      () => postImage({ name: 'a', architecture: 'x86_64', big: 'v'.repeat(70_000) }),
      400,
      /properties\.big: must be at most 65535 characters/,
    ],
    [
      '5,000 properties',
      () => postImage({ name: 'a', architecture: 'x86_64', ...many(5000, (i) => [`p${i}`, 'v']) }),
      400,
      /at most 256 custom properties/,
    ],
    [
      '300 properties as headers',
      () => upload({ ...named, ...many(300, (i) => [`x-image-meta-p${i}`, 'v']) }),
      400,
      /at most 256 custom properties/,
    ],
    [
      '500 tags',
      () => postImage({ name: 'a', architecture: 'x86_64', tags: Array.from({ length: 500 }, (_, i) => `t${i}`) }),
      400,
      /at most 128 tags/,
    ],
    [
      'a 2 MiB metadata body',
      () => postImage({ name: 'a', architecture: 'x86_64', filler: 'x'.repeat(2 * 1024 * 1024) }),
      413,
      /too large/,
    ],
    // Hostile query strings.
    ['a limit of -1', () => list([['limit', '-1']]), 400, /limit must be/],
    ['a limit of a billion', () => list([['limit', '1000000000']]), 400, /limit must be/],
    ['a non-uuid marker', () => list([['marker', '../../etc/passwd']]), 400, /marker must be an image id/],
    ['a numeric filter out of range', () => list([['min_ram', '1e400']]), 400, /minRam must be a number/],
    ['a sort direction that is not one', () => list([['dir', 'sideways']]), 400, /dir must be asc or desc/],
    [
      'a filter given twice',
      () =>
        list([
          ['name', 'a'],
          ['name', 'b'],
        ]),
      400,
      /filter name is given twice/,
    ],
  ];

  it.each(cases)('%s', async (_name, make, status, message) => {
    const before = await kept(t);
    const r = await make();
    expect(r.status).toBe(status);
    expect(r.json()).toMatchObject({ code: status, message: expect.stringMatching(message) });
    expect((r.json() as { message: string }).message.length).toBeLessThan(2000);
    expect(await kept(t)).toEqual(before);
    await healthy(t);
  });

  it('leaves Object.prototype alone after all of it', () => {
    expect(({} as Record<string, unknown>)['admin']).toBeUndefined();
    expect(({} as Record<string, unknown>)['owner']).toBeUndefined();
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
  });

  it('refuses raw bytes in a metadata header that are not UTF-8', async () => {
    const before = await kept(t);
    const r = await post(Buffer.from('bits'), { ...octet, ...named, 'x-image-meta-name': '\u00ff\u00fe\u00c3' });
    expect(r.status).toBe(400);
    expect((r.json() as { message: string }).message).toMatch(/header x-image-meta-name is not valid UTF-8/);
    expect(await kept(t)).toEqual(before);
    await healthy(t);
  });

  it.each([
    ['3,000 metadata headers', many(3000, (i) => [`x-image-meta-p${i}`, 'v'])],
    ['one 100 KiB header', { 'x-image-meta-big': 'x'.repeat(100 * 1024) }],
    ['a 60 KiB query string', undefined],
  ] as [string, Record<string, string> | undefined][])(
    'answers %s beyond the 16 KiB header limit with 431 (or drops the connection), keeping nothing',
    async (_name, headers) => {
      const before = await kept(t);
      const head = headers
        ? signedHead(t.url, t.users.bob, 'POST', '/images', { ...octet, ...named, ...headers, 'content-length': '4' })
        : signedHead(t.url, t.users.bob, 'GET', `/images?name=${'x'.repeat(60 * 1024)}`, {});
      const r = await rawExchange(t.url, `${head}${headers ? 'bits' : ''}`);
      expect(r.status === 431 || (r.status === 0 && r.closedByServer), r.text.slice(0, 200)).toBe(true);
      expect(r.closedByServer).toBe(true);
      expect(await kept(t)).toEqual(before);
      await healthy(t);
    },
  );

  it('takes raw UTF-8 bytes in a metadata header as UTF-8 (what older clients send)', async () => {
    const utf8AsLatin1 = Buffer.from('Débian ✓', 'utf8').toString('latin1');
    const r = await post(Buffer.from('bits'), {
      ...octet,
      'x-image-meta-name': utf8AsLatin1,
      'x-image-meta-architecture': 'x86_64',
    });
    expect(r.status).toBe(201);
    expect((r.json() as { image: { name: string } }).image.name).toBe('Débian ✓');
    await rawRequest(t.url, {
      method: 'DELETE',
      path: `/images/${(r.json() as { image: { _id: string } }).image._id}`,
      as: t.users.bob,
    });
  });

  it('carries control characters in a property value exactly (free-form text; NUL included)', async () => {
    // Property values are free-form (the Nimbus adapter test relies on this): stored and given back byte for byte.
    const value = 'a\u0000b\nc\td\u0007';
    const r = await postImage({ name: 'control-prop', architecture: 'x86_64', note: value });
    expect(r.status).toBe(201);
    const id = (r.json() as { image: { _id: string } }).image._id;
    const meta = await rawRequest(t.url, { method: 'GET', path: `/images/${id}/meta`, as: t.users.bob });
    expect((meta.json() as { image: { note: string } }).image.note).toBe(value);
    const head = await rawRequest(t.url, { method: 'HEAD', path: `/images/${id}`, as: t.users.bob });
    expect(decodeURIComponent(String(head.headers['x-image-meta-note']))).toBe(value);
    await rawRequest(t.url, { method: 'DELETE', path: `/images/${id}`, as: t.users.bob });
  });

  it.each([
    ['bytes=99999999999999999999-', 416, undefined],
    ['bytes=-99999999999999999999', 206, [0, 99_999]],
    ['bytes=5-3', 416, undefined],
    ['bytes=-0', 416, undefined],
    ['bytes=0-1e3', 200, undefined],
    ['bytes=0x10-0x20', 200, undefined],
    ['bytes= 0 - 5', 200, undefined],
    ['bytes=--5', 200, undefined],
    ['items=0-5', 200, undefined],
    [`bytes=${'0-0,'.repeat(2000)}0-0`, 200, undefined],
    ['bytes=00000000000000000000000000005-6', 206, [5, 6]],
    ['bytes=99990-999999999999', 206, [99_990, 99_999]],
  ] as [string, number, [number, number] | undefined][])(
    'serves a hostile Range header "%s" as %i with the right bytes',
    async (range, status, span) => {
      const r = await rawRequest(t.url, { method: 'GET', path: imagePath, headers: { range }, as: t.users.bob });
      expect(r.status).toBe(status);
      if (status === 416) {
        expect(r.headers['content-range']).toBe(`bytes */${data.length}`);
        expect(r.json()).toMatchObject({ code: 416 });
      } else if (span) {
        expect(r.headers['content-range']).toBe(`bytes ${span[0]}-${span[1]}/${data.length}`);
        expect(r.body.equals(data.subarray(span[0], span[1] + 1))).toBe(true);
      } else {
        // A Range visor does not understand is ignored (RFC 9110 §14.2): the whole image.
        expect(r.body.equals(data)).toBe(true);
      }
      await healthy(t);
    },
  );

  it("refuses an upload whose signed content hash is not the body's, keeping nothing", async () => {
    const before = await kept(t);
    const r = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { ...octet, ...named, 'x-visor-content-sha256': sha256(Buffer.from('other')) },
      body: randomBytes(10_000),
      as: t.users.bob,
    });
    expect(r.status).toBe(400);
    expect(await kept(t)).toEqual(before);
  });
});
