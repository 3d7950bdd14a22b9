import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Catalog, ImageQuery } from '../catalog/port.js';
import { isVisorError, type ErrorKind, type ValidationError } from '../errors.js';
import type { Image } from '../image/model.js';
import { makeImage, steppingClock } from './images.js';
import { referenceQuery } from './reference-query.js';
import { skipSuite, type SuiteSkip } from './skips.js';

/** How a catalog implementation is set up for the contract: every `open` gives an empty catalog. */
export interface CatalogHarness {
  /** A new, empty, initialised catalog. */
  open(): Promise<Catalog>;
  /** A second instance over the same storage as `catalog` (persistence across restarts). */
  reopen(catalog: Catalog): Promise<Catalog>;
  /** Removes everything the harness created. */
  cleanup(): Promise<void>;
}

async function expectKind(promise: Promise<unknown>, kind: ErrorKind): Promise<unknown> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a ${kind} error`).toBeDefined();
  expect(isVisorError(error) ? error.kind : error).toBe(kind);
  return error;
}

async function listAll(catalog: Catalog, query: ImageQuery): Promise<{ items: Image[]; pages: number }> {
  const items: Image[] = [];
  let marker: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await catalog.images.list({ ...query, ...(marker ? { marker } : {}) });
    pages += 1;
    if (query.limit !== undefined) expect(page.items.length).toBeLessThanOrEqual(query.limit);
    items.push(...page.items);
    if (!page.nextMarker) break;
    expect(page.items.length).toBe(query.limit);
    marker = page.nextMarker;
    if (pages > 10_000) throw new Error('paging does not end');
  }
  return { items, pages };
}

/**
 * The catalog contract: one behaviour suite that every catalog implementation's test calls
 * (STYLE.md: unstorage's driver suite). `skipReason` reports the whole suite as skipped.
 */
export function catalogContract(
  name: string,
  makeHarness: () => Promise<CatalogHarness>,
  skipReason?: SuiteSkip,
): void {
  describe(`catalog contract: ${name}`, () => {
    let harness: CatalogHarness;
    let catalog: Catalog;

    beforeEach(async (ctx) => {
      if (skipReason) skipSuite(ctx, skipReason);
      harness = await makeHarness();
      catalog = await harness.open();
    });
    afterEach(async () => {
      if (skipReason) return;
      await catalog?.close();
      await harness?.cleanup();
    });

    describe('create and get', () => {
      it('stores an image and returns it unchanged', async () => {
        const image = makeImage({
          properties: { hw_disk_bus: 'virtio' },
          tags: ['lts'],
          os: { distro: 'ubuntu', version: '24.04' },
        });
        await expect(catalog.images.create(image)).resolves.toEqual(image);
        await expect(catalog.images.get(image.id)).resolves.toEqual(image);
        await expect(catalog.images.find(image.id)).resolves.toEqual(image);
      });

      it('reports a missing image as notFound, and find() as undefined', async () => {
        await expectKind(catalog.images.get('00000000-0000-4000-8000-000000000000'), 'notFound');
        await expect(catalog.images.find('00000000-0000-4000-8000-000000000000')).resolves.toBeUndefined();
      });

      it('refuses a second image with the same id as a conflict', async () => {
        const image = makeImage();
        await catalog.images.create(image);
        await expectKind(catalog.images.create({ ...image, name: 'other' }), 'conflict');
        await expect(catalog.images.get(image.id)).resolves.toMatchObject({ name: image.name });
      });

      it('refuses an invalid image, naming every bad field, and stores nothing', async () => {
        const bad = {
          ...makeImage(),
          name: '',
          architecture: 'sparc',
          size: -1,
          checksums: { md5: 'xyz' },
        } as unknown as Image;
        const error = await expectKind(catalog.images.create(bad), 'invalidInput');
        const paths = (error as ValidationError).issues.map((i) => i.path);
        expect(paths).toEqual(expect.arrayContaining(['name', 'architecture', 'size', 'checksums.md5']));
        await expect(catalog.images.find(bad.id)).resolves.toBeUndefined();
      });

      it('keeps what was written across a restart', async () => {
        const image = makeImage({ properties: { k: 'v' } });
        await catalog.images.create(image);
        const again = await harness.reopen(catalog);
        try {
          await expect(again.images.get(image.id)).resolves.toEqual(image);
        } finally {
          await again.close();
        }
      });

      it('can be closed twice', async () => {
        await catalog.close();
        await catalog.close();
        catalog = await harness.open();
      });
    });

    describe('snapshot (optional: what `visor catalog backup` reads)', () => {
      it('sees the catalog as it was when it began, while writes go on beside it', async (ctx) => {
        if (!catalog.snapshot) return ctx.skip('this catalog offers no snapshot (a backup is refused under writes)');
        const before = makeImage({ name: 'before' });
        await catalog.images.create(before);
        await catalog.state.set('k', 1);
        const after = makeImage({ name: 'after' });
        const seen = await catalog.snapshot(async (view) => {
          const first = await view.images.count();
          await catalog.images.create(after);
          await catalog.images.update(before.id, before.revision, { name: 'changed' });
          await catalog.state.set('k', 2);
          return {
            first,
            count: await view.images.count(),
            listed: (await view.images.list()).items.map((i) => i.name),
            after: await view.images.find(after.id),
            state: await view.state.get('k'),
          };
        });
        expect(seen).toEqual({ first: 1, count: 1, listed: ['before'], after: undefined, state: 1 });
        expect(await catalog.images.count()).toBe(2);
        expect((await catalog.images.get(before.id)).name).toBe('changed');
        await expect(catalog.state.get('k')).resolves.toBe(2);
      });
    });

    describe('list: filters', () => {
      let a: Image, b: Image, c: Image;
      beforeEach(async () => {
        a = makeImage({
          name: 'alpha',
          architecture: 'x86_64',
          size: 100,
          tags: ['lts', 'gpu'],
          properties: { color: 'red' },
          os: { distro: 'ubuntu' },
          checksums: { sha256: 'a'.repeat(64) },
        });
        b = makeImage({
          name: 'beta',
          architecture: 'aarch64',
          size: 200,
          tags: ['lts'],
          properties: { color: 'blue' },
          os: { distro: 'debian' },
        });
        c = makeImage({ name: 'gamma', architecture: 'x86_64', tags: [], properties: {} });
        for (const image of [a, b, c]) await catalog.images.create(image);
      });
      const names = (images: Image[]) => images.map((i) => i.name).sort();

      it('matches equality on plain attributes', async () => {
        expect(names((await catalog.images.list({ filters: { architecture: 'x86_64' } })).items)).toEqual([
          'alpha',
          'gamma',
        ]);
        expect(names((await catalog.images.list({ filters: { name: 'beta' } })).items)).toEqual(['beta']);
      });
      it('matches numbers, also when given as text', async () => {
        expect(names((await catalog.images.list({ filters: { size: 200 } })).items)).toEqual(['beta']);
        expect(names((await catalog.images.list({ filters: { size: '100' } })).items)).toEqual(['alpha']);
        await expectKind(catalog.images.list({ filters: { size: 'big' } }), 'invalidInput');
      });
      it('matches nested attributes and checksums', async () => {
        expect(names((await catalog.images.list({ filters: { 'os.distro': 'debian' } })).items)).toEqual(['beta']);
        expect(names((await catalog.images.list({ filters: { 'checksums.sha256': 'a'.repeat(64) } })).items)).toEqual([
          'alpha',
        ]);
      });
      it('matches custom properties', async () => {
        expect(names((await catalog.images.list({ filters: { 'properties.color': 'red' } })).items)).toEqual(['alpha']);
        expect((await catalog.images.list({ filters: { 'properties.color': 'green' } })).items).toEqual([]);
      });
      it('matches list attributes by membership', async () => {
        expect(names((await catalog.images.list({ filters: { tags: 'lts' } })).items)).toEqual(['alpha', 'beta']);
        expect(names((await catalog.images.list({ filters: { tags: 'gpu' } })).items)).toEqual(['alpha']);
      });
      it('follows tags through updates and deletes (a tag filter never finds a stale tag)', async () => {
        const tagged = makeImage({ name: 'epsilon', tags: ['blue', 'green'] });
        await catalog.images.create(tagged);
        const byTag = async (tag: string) => names((await catalog.images.list({ filters: { tags: tag } })).items);
        expect(await byTag('blue')).toEqual(['epsilon']);
        const retagged = await catalog.images.update(tagged.id, tagged.revision, { tags: ['green', 'red'] });
        expect(await byTag('blue')).toEqual([]);
        expect(await byTag('red')).toEqual(['epsilon']);
        // A change that leaves the tags alone keeps them findable.
        const renamed = await catalog.images.update(tagged.id, retagged.revision, { name: 'epsilon-2' });
        expect(await byTag('green')).toEqual(['epsilon-2']);
        await expect(catalog.images.count({ filters: { tags: 'red' } })).resolves.toBe(1);
        await catalog.images.update(tagged.id, renamed.revision, { tags: [] });
        expect(await byTag('green')).toEqual([]);
        await catalog.images.delete(tagged.id);
        expect(await byTag('red')).toEqual([]);
      });
      it('matches the digests still pending by membership, and stores their clearing', async () => {
        const pending = makeImage({
          name: 'delta',
          checksums: { sha256: 'd'.repeat(64) },
          checksumsPending: ['md5', 'sha512'],
        });
        await catalog.images.create(pending);
        expect(names((await catalog.images.list({ filters: { checksumsPending: 'md5' } })).items)).toEqual(['delta']);
        expect(names((await catalog.images.list({ filters: { checksumsPending: 'sha512' } })).items)).toEqual([
          'delta',
        ]);
        const done = await catalog.images.update(pending.id, pending.revision, {
          checksums: { md5: 'e'.repeat(32), sha256: 'd'.repeat(64), sha512: 'f'.repeat(128) },
          checksumsPending: null,
        });
        expect(done.checksumsPending).toBeUndefined();
        expect((await catalog.images.find(pending.id))?.checksumsPending).toBeUndefined();
        expect((await catalog.images.list({ filters: { checksumsPending: 'md5' } })).items).toEqual([]);
      });
      it('combines several filters with AND', async () => {
        expect(names((await catalog.images.list({ filters: { tags: 'lts', architecture: 'x86_64' } })).items)).toEqual([
          'alpha',
        ]);
        await expect(catalog.images.count({ filters: { tags: 'lts', architecture: 'x86_64' } })).resolves.toBe(1);
      });
      it('refuses unknown attributes instead of ignoring them', async () => {
        await expectKind(catalog.images.list({ filters: { colour: 'red' } }), 'invalidInput');
        await expectKind(catalog.images.list({ sort: 'nonsense' }), 'invalidInput');
        await expectKind(catalog.images.list({ sort: 'tags' }), 'invalidInput');
      });
      it('does not treat filter values as patterns or operators', async () => {
        expect((await catalog.images.list({ filters: { name: '%' } })).items).toEqual([]);
        expect((await catalog.images.list({ filters: { name: "alpha' OR '1'='1" } })).items).toEqual([]);
        expect((await catalog.images.list({ filters: { 'properties.color': '{"$ne":null}' } })).items).toEqual([]);
      });
    });

    describe('list: search', () => {
      let byName: Map<string, Image>;
      beforeEach(async () => {
        const specs: Partial<Image>[] = [
          { name: 'Ubuntu 22.04 Server', access: 'public', tags: ['lts'] },
          {
            name: 'debian-12',
            access: 'public',
            tags: ['Cloud_Ready'],
            properties: { description: 'Bookworm generic image' },
          },
          { name: '100% pure_raw', access: 'public', tags: [] },
          { name: 'secret ubuntu build', access: 'private', owner: 'alice' },
          { name: 'gamma (test) C:\\images', access: 'public', properties: { notes: 'ubuntu' } },
          { name: 'shared Ubuntu', access: 'shared', owner: 'alice', members: ['bob'] },
        ];
        byName = new Map();
        for (const spec of specs) byName.set(spec.name!, await catalog.images.create(makeImage(spec)));
      });
      const found = async (query: ImageQuery) => (await listAll(catalog, query)).items.map((i) => i.name).sort();

      it('finds text anywhere in the name, ignoring the case of ASCII letters', async () => {
        const ubuntus = ['Ubuntu 22.04 Server', 'secret ubuntu build', 'shared Ubuntu'];
        expect(await found({ search: 'ubuntu' })).toEqual(ubuntus);
        expect(await found({ search: 'UbUnTu' })).toEqual(ubuntus);
        expect(await found({ search: '22.04 SERVER' })).toEqual(['Ubuntu 22.04 Server']);
        expect(await found({ search: 'nothing like it' })).toEqual([]);
        expect(await found({ search: '' })).toHaveLength(6);
      });
      it('finds text in a tag and in the description property, not in other properties', async () => {
        expect(await found({ search: 'cloud_r' })).toEqual(['debian-12']);
        expect(await found({ search: 'LTS' })).toEqual(['Ubuntu 22.04 Server']);
        expect(await found({ search: 'bookworm' })).toEqual(['debian-12']);
        expect(await found({ search: 'notes' })).toEqual([]);
      });
      it('treats every character as plain text: no wildcard, pattern or operator', async () => {
        expect(await found({ search: '%' })).toEqual(['100% pure_raw']);
        expect(await found({ search: '0% p' })).toEqual(['100% pure_raw']);
        expect(await found({ search: 'a%' })).toEqual([]);
        expect(await found({ search: '_' })).toEqual(['100% pure_raw', 'debian-12']);
        expect(await found({ search: 'n-1' })).toEqual(['debian-12']);
        expect(await found({ search: 'n_1' })).toEqual([]);
        expect(await found({ search: '\\i' })).toEqual(['gamma (test) C:\\images']);
        expect(await found({ search: '\\' })).toEqual(['gamma (test) C:\\images']);
        expect(await found({ search: '(test)' })).toEqual(['gamma (test) C:\\images']);
        expect(await found({ search: '.*' })).toEqual([]);
        expect(await found({ search: '^u' })).toEqual([]);
        expect(await found({ search: "' OR '1'='1" })).toEqual([]);
        expect(await found({ search: '{"$ne":null}' })).toEqual([]);
      });
      it('never finds an image the caller may not see, in the listing or the count', async () => {
        expect(await found({ search: 'ubuntu', visibleTo: 'bob' })).toEqual(['Ubuntu 22.04 Server', 'shared Ubuntu']);
        expect(await found({ search: 'secret', visibleTo: 'bob' })).toEqual([]);
        await expect(catalog.images.count({ search: 'secret', visibleTo: 'bob' })).resolves.toBe(0);
        await expect(catalog.images.count({ search: 'secret', visibleTo: 'alice' })).resolves.toBe(1);
        await expect(catalog.images.count({ search: 'ubuntu', visibleTo: 'carol' })).resolves.toBe(1);
      });
      it('pages a search with limit and marker, and combines it with filters', async () => {
        const all = await found({ search: 'U' });
        const { items, pages } = await listAll(catalog, { search: 'u', limit: 1, sort: 'name', dir: 'desc' });
        expect(items.map((i) => i.name).sort()).toEqual(all);
        expect(pages).toBe(all.length);
        expect(await found({ search: 'ubuntu', filters: { access: 'shared' } })).toEqual(['shared Ubuntu']);
        expect(await found({ search: 'ubuntu', filters: { tags: 'lts' } })).toEqual(['Ubuntu 22.04 Server']);
      });
      it('follows every change: a renamed, retagged or deleted image is found by what it is now', async () => {
        const debian = byName.get('debian-12')!;
        const renamed = await catalog.images.update(debian.id, debian.revision, {
          name: 'trixie-13',
          tags: ['testing'],
          properties: { description: null },
        });
        expect(await found({ search: 'debian' })).toEqual([]);
        expect(await found({ search: 'bookworm' })).toEqual([]);
        expect(await found({ search: 'TRIXIE' })).toEqual(['trixie-13']);
        expect(await found({ search: 'testing' })).toEqual(['trixie-13']);
        await catalog.images.delete(renamed.id);
        expect(await found({ search: 'trixie' })).toEqual([]);
        await expect(catalog.images.count({ search: 'trixie' })).resolves.toBe(0);
      });
      it('refuses a search text that is too long or holds control characters', async () => {
        await expectKind(catalog.images.list({ search: 'x'.repeat(201) }), 'invalidInput');
        await expectKind(catalog.images.list({ search: 'a\nb' }), 'invalidInput');
        await expectKind(catalog.images.count({ search: 'nul\u0000' }), 'invalidInput');
        expect(byName.size).toBe(6);
      });
    });

    describe('list: visibility', () => {
      it("shows public images, the owner's own, and shared ones that name the caller", async () => {
        const pub = makeImage({ name: 'pub', access: 'public', owner: 'alice' });
        const mine = makeImage({ name: 'mine', access: 'private', owner: 'bob' });
        const theirs = makeImage({ name: 'theirs', access: 'private', owner: 'alice' });
        const shared = makeImage({ name: 'shared', access: 'shared', owner: 'alice', members: ['bob'] });
        const notShared = makeImage({ name: 'not-shared', access: 'shared', owner: 'alice', members: ['carol'] });
        for (const image of [pub, mine, theirs, shared, notShared]) await catalog.images.create(image);
        const seen = (await catalog.images.list({ visibleTo: 'bob', sort: 'name' })).items.map((i) => i.name);
        expect(seen).toEqual(['mine', 'pub', 'shared']);
        await expect(catalog.images.count({ visibleTo: 'bob' })).resolves.toBe(3);
        await expect(catalog.images.count()).resolves.toBe(5);
      });

      // No existence or value oracle.
      it('treats a marker the caller cannot see exactly like one that does not exist', async () => {
        const secret = { name: 'm-secret', access: 'private' as const, owner: 'alice', properties: { pin: 'hunter2' } };
        const hidden = makeImage(secret);
        const notShared = makeImage({ name: 'm-other', access: 'shared', owner: 'alice', members: ['carol'] });
        const visible = [
          makeImage({ name: 'm-a', access: 'public', owner: 'alice' }),
          makeImage({ name: 'm-z', access: 'public', owner: 'alice' }),
          makeImage({ name: 'm-mine', access: 'private', owner: 'bob' }),
        ];
        for (const image of [hidden, notShared, ...visible]) await catalog.images.create(image);
        const missing = '00000000-0000-4000-8000-00000000beef';
        const failure = async (marker: string, sort: string) => {
          const listing = catalog.images.list({ visibleTo: 'bob', sort, marker, limit: 10 });
          const error = (await expectKind(listing, 'invalidInput')) as Error & { details?: Record<string, unknown> };
          const details = JSON.stringify(error.details).replace(marker, 'ID');
          return { message: error.message.replace(marker, 'ID'), details };
        };
        for (const sort of ['name', 'properties.pin', 'createdAt', 'id']) {
          const reference = await failure(missing, sort);
          expect(await failure(hidden.id, sort), sort).toEqual(reference);
          expect(await failure(notShared.id, sort), sort).toEqual(reference);
        }
        // The owner and an unrestricted listing still page after it, and visible markers work for bob.
        const asOwner = catalog.images.list({ visibleTo: 'alice', sort: 'name', marker: hidden.id });
        await expect(asOwner).resolves.toBeDefined();
        await expect(catalog.images.list({ sort: 'name', marker: hidden.id })).resolves.toBeDefined();
        const after = await catalog.images.list({ visibleTo: 'bob', sort: 'name', marker: visible[0]!.id });
        expect(after.items.map((i) => i.name)).toEqual(['m-mine', 'm-z']);
      });
    });

    describe('list: sort and paging', () => {
      it('sorts by any attribute both ways, absent values first ascending, the id breaking ties', async () => {
        const images = [
          makeImage({ name: 'b', size: 5, properties: { rank: '2' } }),
          makeImage({ name: 'a', size: 5, properties: { rank: '1' } }),
          makeImage({ name: 'c', properties: {} }),
          makeImage({ name: 'a', size: 1, properties: { rank: '3' } }),
        ];
        for (const image of images) await catalog.images.create(image);
        for (const sort of ['name', 'size', 'properties.rank', 'createdAt', 'id']) {
          for (const dir of ['asc', 'desc'] as const) {
            const got = (await catalog.images.list({ sort, dir })).items.map((i) => i.id);
            expect(got, `${sort} ${dir}`).toEqual(referenceQuery(images, { sort, dir }).map((i) => i.id));
          }
        }
      });

      it('pages with limit and marker, each image exactly once, no marker after the last page', async () => {
        const images = Array.from({ length: 23 }, (_, i) =>
          makeImage({ name: `img-${i % 5}`, ...(i % 3 === 0 ? {} : { size: i % 4 }) }),
        );
        for (const image of images) await catalog.images.create(image);
        for (const sort of ['id', 'name', 'size']) {
          for (const dir of ['asc', 'desc'] as const) {
            const { items, pages } = await listAll(catalog, { sort, dir, limit: 4 });
            expect(items.map((i) => i.id)).toEqual(referenceQuery(images, { sort, dir }).map((i) => i.id));
            expect(pages).toBe(6);
          }
        }
        const exact = await catalog.images.list({ limit: 23 });
        expect(exact.items).toHaveLength(23);
        expect(exact.nextMarker).toBeUndefined();
      });

      it('refuses bad paging arguments', async () => {
        await expectKind(catalog.images.list({ limit: 0 }), 'invalidInput');
        await expectKind(catalog.images.list({ limit: 1.5 }), 'invalidInput');
        await expectKind(catalog.images.list({ marker: 'not-an-id' }), 'invalidInput');
        await expectKind(catalog.images.list({ marker: '00000000-0000-4000-8000-000000000000' }), 'invalidInput');
        await expectKind(catalog.images.list({ dir: 'up' as 'asc' }), 'invalidInput');
      });

      it('agrees with the reference semantics on random images and queries', async () => {
        const distros = ['ubuntu', 'debian', 'alpine'];
        const imageArb = fc.record({
          name: fc.constantFrom('a', 'b', 'B', 'é', 'z z'),
          architecture: fc.constantFrom('x86_64', 'aarch64'),
          size: fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }),
          access: fc.constantFrom('public', 'private'),
          owner: fc.constantFrom('alice', 'bob'),
          tags: fc.subarray(['lts', 'gpu', 'min']),
          color: fc.option(fc.constantFrom('red', 'blue'), { nil: undefined }),
          distro: fc.option(fc.constantFrom(...distros), { nil: undefined }),
        });
        const queryArb = fc.record({
          filters: fc.record(
            {
              architecture: fc.constantFrom('x86_64', 'aarch64'),
              tags: fc.constantFrom('lts', 'gpu'),
              'properties.color': fc.constantFrom('red', 'blue'),
              size: fc.integer({ min: 0, max: 5 }),
            },
            { requiredKeys: [] },
          ),
          visibleTo: fc.option(fc.constantFrom('alice', 'bob'), { nil: undefined }),
          sort: fc.constantFrom('id', 'name', 'size', 'createdAt', 'properties.color', 'os.distro'),
          dir: fc.constantFrom('asc', 'desc'),
          limit: fc.integer({ min: 1, max: 7 }),
          search: fc.option(fc.constantFrom('a', 'B', 'z ', 'é', 'LT', 'g', '%', '_'), { nil: undefined }),
        });
        await fc.assert(
          fc.asyncProperty(fc.array(imageArb, { maxLength: 18 }), queryArb, async (specs, rawQuery) => {
            const c = await harness.open();
            try {
              const clock = steppingClock();
              const images = specs.map((s) =>
                makeImage(
                  {
                    name: s.name,
                    architecture: s.architecture as Image['architecture'],
                    ...(s.size !== undefined ? { size: s.size } : {}),
                    access: s.access as Image['access'],
                    owner: s.owner,
                    tags: s.tags,
                    properties: s.color ? { color: s.color } : {},
                    ...(s.distro ? { os: { distro: s.distro } } : {}),
                  },
                  clock,
                ),
              );
              for (const image of images) await c.images.create(image);
              const query: ImageQuery = {
                filters: rawQuery.filters as Record<string, string | number>,
                sort: rawQuery.sort,
                dir: rawQuery.dir as 'asc' | 'desc',
                limit: rawQuery.limit,
                ...(rawQuery.visibleTo ? { visibleTo: rawQuery.visibleTo } : {}),
                ...(rawQuery.search !== undefined ? { search: rawQuery.search } : {}),
              };
              const { items } = await listAll(c, query);
              expect(items.map((i) => i.id)).toEqual(referenceQuery(images, query).map((i) => i.id));
              await expect(c.images.count(query)).resolves.toBe(items.length);
            } finally {
              await c.close();
            }
          }),
          { numRuns: 40 },
        );
      });
    });

    describe('update', () => {
      it('applies changes, merges properties, clears with null, and bumps the revision', async () => {
        const image = await catalog.images.create(makeImage({ minRam: 512, properties: { a: '1', b: '2' } }));
        const next = await catalog.images.update(image.id, 1, {
          name: 'renamed',
          minRam: null,
          properties: { a: null, c: '3' },
          tags: ['x'],
        });
        expect(next).toMatchObject({ name: 'renamed', revision: 2, properties: { b: '2', c: '3' }, tags: ['x'] });
        expect(next.minRam).toBeUndefined();
        expect(Date.parse(next.updatedAt)).toBeGreaterThanOrEqual(Date.parse(image.updatedAt));
        await expect(catalog.images.get(image.id)).resolves.toEqual(next);
      });

      it('refuses a stale revision as a conflict and writes nothing', async () => {
        const image = await catalog.images.create(makeImage());
        await catalog.images.update(image.id, 1, { name: 'first' });
        await expectKind(catalog.images.update(image.id, 1, { name: 'second' }), 'conflict');
        await expect(catalog.images.get(image.id)).resolves.toMatchObject({ name: 'first', revision: 2 });
      });

      it('lets exactly one of several concurrent writers of the same revision win', async () => {
        const image = await catalog.images.create(makeImage());
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) => catalog.images.update(image.id, 1, { name: `writer-${i}` })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(isVisorError(r.reason, 'conflict')).toBe(true);
        await expect(catalog.images.get(image.id)).resolves.toMatchObject({ revision: 2 });
      });

      it('reports an unknown image as notFound', async () => {
        await expectKind(catalog.images.update('00000000-0000-4000-8000-000000000000', 1, { name: 'x' }), 'notFound');
      });

      it('refuses invalid changes, naming every bad field, and writes nothing', async () => {
        const image = await catalog.images.create(makeImage());
        const error = await expectKind(
          catalog.images.update(image.id, 1, { name: '', architecture: 'sparc' as 'i386', id: 'x' } as never),
          'invalidInput',
        );
        expect((error as ValidationError).issues.map((i) => i.path)).toEqual(
          expect.arrayContaining(['name', 'architecture', 'id']),
        );
        await expect(catalog.images.get(image.id)).resolves.toEqual(image);
      });

      it('enforces the status lifecycle', async () => {
        const image = await catalog.images.create(makeImage());
        // No location yet.
        await expectKind(catalog.images.update(image.id, 1, { status: 'available' }), 'invalidInput');
        const uploading = await catalog.images.update(image.id, 1, { status: 'uploading' });
        const available = await catalog.images.update(image.id, uploading.revision, {
          status: 'available',
          location: { store: 'local', uri: 'file:///x' },
          size: 3,
        });
        const deleted = await catalog.images.update(image.id, available.revision, { status: 'deleted' });
        await expectKind(catalog.images.update(image.id, deleted.revision, { status: 'uploading' }), 'conflict');
        // A soft delete is undone (restore) back to the bits it kept.
        const restored = await catalog.images.update(image.id, deleted.revision, { status: 'available' });
        expect(restored.location).toEqual({ store: 'local', uri: 'file:///x' });
      });

      it('keeps the life cycle fields, and leaves deleted images out where asked', async () => {
        const since = '2026-01-01T00:00:00.000Z';
        const a = await catalog.images.create(makeImage({ name: 'a', family: 'deb-12' }));
        const b = await catalog.images.create(makeImage({ name: 'b', family: 'deb-12', protected: true }));
        const deleteOn = '2027-01-01T00:00:00.000Z';
        const deprecation = { state: 'deprecated' as const, since, replacement: b.id, deleteOn };
        const deprecated = await catalog.images.update(a.id, a.revision, { deprecation });
        expect((await catalog.images.get(a.id)).deprecation).toEqual(deprecation);
        const flagged = await catalog.images.list({ filters: { 'deprecation.state': 'deprecated' } });
        expect(flagged.items.map((i) => i.id)).toEqual([a.id]);
        expect((await catalog.images.list({ filters: { family: 'deb-12' } })).items).toHaveLength(2);
        const itself = { deprecation: { ...deprecation, replacement: a.id } };
        await expectKind(catalog.images.update(a.id, deprecated.revision, itself), 'invalidInput');
        await expectKind(catalog.images.update(a.id, deprecated.revision, { deletedAt: since }), 'invalidInput');
        const trashed = { status: 'deleted' as const, deletedAt: since, purgeAfter: since };
        await catalog.images.update(a.id, deprecated.revision, trashed);
        expect((await catalog.images.list({ hideDeleted: true })).items.map((i) => i.id)).toEqual([b.id]);
        expect(await catalog.images.count({ hideDeleted: true })).toBe(1);
        expect(await catalog.images.count({ filters: { status: 'deleted' } })).toBe(1);
        expect((await catalog.images.list({})).items).toHaveLength(2);
        expect((await catalog.images.get(b.id)).protected).toBe(true);
      });
    });

    describe('users', () => {
      const user = (name: string, accessKey: string) => ({
        id: randomUUID(),
        name,
        accessKey,
        sealedSecret: 'v1.sealed',
        admin: false,
        createdAt: '2026-01-01T00:00:00.000Z',
      });
      it('creates, finds by name, id and access key, lists and deletes users', async () => {
        const alice = await catalog.users.create(user('alice', 'AKIAAAAAAAAAAAAAAAAA'));
        await catalog.users.create({ ...user('bob', 'AKIABBBBBBBBBBBBBBBB'), admin: true });
        const found = catalog.users.findByName('alice');
        await expect(found).resolves.toMatchObject({ id: alice.id, accessKey: 'AKIAAAAAAAAAAAAAAAAA', admin: false });
        await expect(catalog.users.findById(alice.id)).resolves.toMatchObject({ name: 'alice' });
        await expect(catalog.users.findById(randomUUID())).resolves.toBeUndefined();
        await expect(catalog.users.findByAccessKey('AKIABBBBBBBBBBBBBBBB')).resolves.toMatchObject({
          name: 'bob',
          admin: true,
        });
        await expect(catalog.users.findByAccessKey('AKIAZZZZZZZZZZZZZZZZ')).resolves.toBeUndefined();
        expect((await catalog.users.list()).map((u) => u.name)).toEqual(['alice', 'bob']);
        await catalog.users.delete('alice');
        await expect(catalog.users.findByName('alice')).resolves.toBeUndefined();
        await expectKind(catalog.users.delete('alice'), 'notFound');
      });
      it('refuses a duplicate name or access key, and invalid users', async () => {
        await catalog.users.create(user('alice', 'AKIAAAAAAAAAAAAAAAAA'));
        await expectKind(catalog.users.create(user('alice', 'AKIACCCCCCCCCCCCCCCC')), 'conflict');
        await expectKind(catalog.users.create(user('carol', 'AKIAAAAAAAAAAAAAAAAA')), 'conflict');
        const alice = (await catalog.users.findByName('alice'))!;
        await expectKind(catalog.users.create({ ...user('dave', 'AKIAEEEEEEEEEEEEEEEE'), id: alice.id }), 'conflict');
        const badId = { ...user('erin', 'AKIAFFFFFFFFFFFFFFFF'), id: 'not-a-uuid' };
        await expectKind(catalog.users.create(badId), 'invalidInput');
        await expectKind(catalog.users.create(user('Bad Name', 'AKIADDDDDDDDDDDDDDDD')), 'invalidInput');
        expect((await catalog.users.list()).map((u) => u.name)).toEqual(['alice']);
      });
    });

    describe('agent records', () => {
      const run = (id: string, target: string, startedAt: string) => ({
        id,
        target,
        agent: 'agent-1',
        trigger: 'manual' as const,
        dryRun: false,
        status: 'running' as const,
        startedAt,
        actions: [],
      });

      it('keeps run history: create, update, get, list newest first, prune', async () => {
        await catalog.runs.create(run('00000000-0000-4000-8000-000000000001', 'prod', '2026-01-01T00:00:00.000Z'));
        await catalog.runs.create(run('00000000-0000-4000-8000-000000000002', 'prod', '2026-01-02T00:00:00.000Z'));
        await catalog.runs.create(run('00000000-0000-4000-8000-000000000003', 'lab', '2026-01-03T00:00:00.000Z'));
        await expectKind(
          catalog.runs.create(run('00000000-0000-4000-8000-000000000003', 'lab', '2026-01-03T00:00:00.000Z')),
          'conflict',
        );
        const done = {
          ...run('00000000-0000-4000-8000-000000000002', 'prod', '2026-01-02T00:00:00.000Z'),
          status: 'partial' as const,
          finishedAt: '2026-01-02T00:01:00.000Z',
          drift: 2,
          actions: [{ action: 'create', result: 'failed' as const, error: { kind: 'unavailable', message: 'down' } }],
        };
        await catalog.runs.update(done);
        await expect(catalog.runs.get(done.id)).resolves.toEqual(done);
        await expectKind(
          catalog.runs.update(run('00000000-0000-4000-8000-000000000009', 'x', '2026-01-01T00:00:00.000Z')),
          'notFound',
        );
        expect((await catalog.runs.list({ target: 'prod' })).map((r) => r.id)).toEqual([
          '00000000-0000-4000-8000-000000000002',
          '00000000-0000-4000-8000-000000000001',
        ]);
        expect((await catalog.runs.list({ limit: 1 })).map((r) => r.target)).toEqual(['lab']);
        await expect(catalog.runs.prune('prod', 1)).resolves.toBe(1);
        expect((await catalog.runs.list({ target: 'prod' })).map((r) => r.id)).toEqual([
          '00000000-0000-4000-8000-000000000002',
        ]);
        expect(await catalog.runs.list({ target: 'lab' })).toHaveLength(1);
      });

      it('grants a lease to one holder at a time, renews it, and lets it expire', async () => {
        const now = 1_000_000;
        await expect(catalog.leases.acquire('target:prod', 'agent-a', 30_000, now)).resolves.toEqual({
          name: 'target:prod',
          holder: 'agent-a',
          expiresAt: now + 30_000,
        });
        await expect(catalog.leases.acquire('target:prod', 'agent-b', 30_000, now + 1000)).resolves.toBeUndefined();
        await expect(catalog.leases.acquire('target:prod', 'agent-a', 30_000, now + 2000)).resolves.toMatchObject({
          expiresAt: now + 32_000,
        });
        await expect(catalog.leases.acquire('target:lab', 'agent-b', 30_000, now)).resolves.toMatchObject({
          holder: 'agent-b',
        });
        await expect(catalog.leases.acquire('target:prod', 'agent-b', 30_000, now + 40_000)).resolves.toMatchObject({
          holder: 'agent-b',
        });
        await catalog.leases.release('target:prod', 'agent-a'); // not the holder any more: no effect
        await expect(catalog.leases.get('target:prod')).resolves.toMatchObject({ holder: 'agent-b' });
        await catalog.leases.release('target:prod', 'agent-b');
        await expect(catalog.leases.get('target:prod')).resolves.toBeUndefined();
      });

      it('lets exactly one of several concurrent contenders take a lease', async () => {
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) => catalog.leases.acquire('target:race', `agent-${i}`, 60_000)),
        );
        expect(results.filter((r) => r !== undefined)).toHaveLength(1);
      });

      it('keeps small state records by key and lists them by prefix', async () => {
        await catalog.state.set('retired:prod:a', { since: '2026-01-01' });
        await catalog.state.set('retired:prod:b', { since: '2026-01-02' });
        await catalog.state.set('retired:lab:a', 1);
        await catalog.state.set('artifact:x', ['a', 1]);
        await expect(catalog.state.get('artifact:x')).resolves.toEqual(['a', 1]);
        await expect(catalog.state.get('nope')).resolves.toBeUndefined();
        expect(await catalog.state.list('retired:prod:')).toEqual([
          ['retired:prod:a', { since: '2026-01-01' }],
          ['retired:prod:b', { since: '2026-01-02' }],
        ]);
        await catalog.state.set('retired:prod:a', { since: 'later' });
        await catalog.state.delete('retired:prod:b');
        expect(await catalog.state.list('retired:prod:')).toEqual([['retired:prod:a', { since: 'later' }]]);
        expect(await catalog.state.list('%')).toEqual([]);
      });
    });

    describe('replay memory', () => {
      const sig = (n: number) => n.toString(16).padStart(64, 'a');

      it('accepts a signature once, refuses it again until it expires, then forgets it', async () => {
        const now = Date.now();
        await expect(catalog.replays.remember(sig(1), now + 300_000, now)).resolves.toBe(true);
        await expect(catalog.replays.remember(sig(1), now + 300_000, now + 1000)).resolves.toBe(false);
        await expect(catalog.replays.remember(sig(2), now + 300_000, now + 1000)).resolves.toBe(true);
        // Once expired, a request that old fails the clock check anyway: the entry may be taken again.
        await expect(catalog.replays.remember(sig(1), now + 900_000, now + 300_000)).resolves.toBe(true);
        await expect(catalog.replays.remember(sig(1), now + 900_000, now + 300_001)).resolves.toBe(false);
        await expect(catalog.replays.remember(sig(6), now + 300_010, now + 300_001)).resolves.toBe(true);
        await expect(catalog.replays.prune(now + 300_020)).resolves.toBeGreaterThanOrEqual(1);
        await expect(catalog.replays.remember(sig(6), now + 900_000, now + 300_020)).resolves.toBe(true);
      });

      it('is shared by every instance on the same storage and survives a restart', async () => {
        const now = Date.now();
        await expect(catalog.replays.remember(sig(3), now + 300_000, now)).resolves.toBe(true);
        const other = await harness.reopen(catalog);
        try {
          await expect(other.replays.remember(sig(3), now + 300_000, now + 10)).resolves.toBe(false);
          await expect(other.replays.remember(sig(4), now + 300_000, now + 10)).resolves.toBe(true);
          await expect(catalog.replays.remember(sig(4), now + 300_000, now + 20)).resolves.toBe(false);
        } finally {
          await other.close();
        }
        await catalog.close();
        catalog = await harness.reopen(catalog);
        await expect(catalog.replays.remember(sig(3), now + 300_000, now + 30)).resolves.toBe(false);
      });

      it('lets exactly one of several concurrent recorders of the same signature through', async () => {
        const other = await harness.reopen(catalog);
        try {
          const now = Date.now();
          const racers = Array.from({ length: 8 }, (_, i) => (i % 2 ? other : catalog).replays);
          const results = await Promise.all(racers.map((r) => r.remember(sig(5), now + 300_000, now)));
          expect(results.filter(Boolean)).toHaveLength(1);
        } finally {
          await other.close();
        }
      });
    });

    describe('change feed (what wakes agents on a catalog change)', () => {
      it('records every image write in order, the record before and after; nothing for a refused one', async (ctx) => {
        if (!catalog.changes) return ctx.skip('this catalog keeps no change feed (agents sync on their schedule only)');
        const start = await catalog.changes.cursor();
        const image = await catalog.images.create(makeImage({ name: 'feed-a' }));
        const updated = await catalog.images.update(image.id, 1, { name: 'feed-b' });
        await expectKind(catalog.images.update(image.id, 1, { name: 'stale' }), 'conflict');
        await catalog.images.delete(image.id);
        const batch = await catalog.changes.since(start);
        expect(batch.gap).toBe(false);
        expect(batch.changes.map((c) => [c.id, c.op])).toEqual([
          [image.id, 'create'],
          [image.id, 'update'],
          [image.id, 'delete'],
        ]);
        const [created, changed, deleted] = batch.changes;
        expect(created?.after?.name).toBe('feed-a');
        expect(created?.before).toBeUndefined();
        expect(changed?.before?.name).toBe('feed-a');
        expect(changed?.after).toEqual(updated);
        expect(deleted?.before?.name).toBe('feed-b');
        expect(deleted?.after).toBeUndefined();
        const seqs = batch.changes.map((c) => c.seq);
        expect(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!)).toBe(true);
        expect(seqs[0]).toBeGreaterThan(start);
        expect(batch.cursor).toBe(seqs[2]);
        await expect(catalog.changes.cursor()).resolves.toBe(seqs[2]);
        await expect(catalog.changes.since(batch.cursor)).resolves.toEqual({
          changes: [],
          cursor: batch.cursor,
          gap: false,
        });
        // Paged by `limit`: the cursor of a page is where the next one starts.
        const first = await catalog.changes.since(start, 2);
        expect(first.changes.map((c) => c.op)).toEqual(['create', 'update']);
        const rest = await catalog.changes.since(first.cursor, 2);
        expect(rest.changes.map((c) => c.op)).toEqual(['delete']);
      });

      it('shows writes of every instance on the same storage to every other, none lost when they race', async (ctx) => {
        if (!catalog.changes) return ctx.skip('this catalog keeps no change feed (agents sync on their schedule only)');
        const other = await harness.reopen(catalog);
        try {
          const start = await catalog.changes.cursor();
          const made = await Promise.all(
            Array.from({ length: 20 }, (_, i) => (i % 2 ? other : catalog).images.create(makeImage())),
          );
          const seen: string[] = [];
          let cursor = start;
          for (let pages = 0; pages < 50 && seen.length < made.length; pages++) {
            const batch = await other.changes!.since(cursor, 7);
            expect(batch.gap).toBe(false);
            seen.push(...batch.changes.map((c) => c.id));
            cursor = batch.cursor;
          }
          expect(seen.sort()).toEqual(made.map((i) => i.id).sort());
          await expect(catalog.changes.cursor()).resolves.toBe(cursor);
        } finally {
          await other.close();
        }
      });

      it('tells a reader ahead of the feed (catalog replaced under it) to assume anything changed', async (ctx) => {
        if (!catalog.changes) return ctx.skip('this catalog keeps no change feed (agents sync on their schedule only)');
        await catalog.images.create(makeImage());
        const newest = await catalog.changes.cursor();
        await expect(catalog.changes.since(newest + 1000)).resolves.toEqual({ changes: [], cursor: newest, gap: true });
      });
    });

    describe('delete', () => {
      it('removes the image', async () => {
        const image = await catalog.images.create(makeImage());
        await catalog.images.delete(image.id);
        await expect(catalog.images.find(image.id)).resolves.toBeUndefined();
        await expectKind(catalog.images.delete(image.id), 'notFound');
      });
      it('with a revision, only deletes what was not changed since', async () => {
        const image = await catalog.images.create(makeImage());
        await catalog.images.update(image.id, 1, { name: 'changed' });
        await expectKind(catalog.images.delete(image.id, 1), 'conflict');
        await expect(catalog.images.find(image.id)).resolves.toBeDefined();
        await catalog.images.delete(image.id, 2);
        await expect(catalog.images.find(image.id)).resolves.toBeUndefined();
      });
    });
  });
}
