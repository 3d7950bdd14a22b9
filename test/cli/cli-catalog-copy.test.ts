import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { SecretBox } from '../../core/auth/secret-box.js';
import { allImages } from '../../core/catalog/copy.js';
import type { Catalog, RunRecord } from '../../core/catalog/port.js';
import type { Image } from '../../core/image/model.js';
import { requirePeer } from '../peers/index.js';
import { catalogConfigs, type CatalogConfigs } from '../support/catalog-configs.js';
import { runVisorAsync, stackLine } from '../support/cli.js';
import { makeImage } from '../support/images.js';

/**
 * `visor catalog copy`: SQLite -> PostgreSQL -> SQLite, with images, users (their sealed secrets
 * must still open: the key file goes along or the secrets are sealed again) and the agent's
 * records; counts and checksums compared, nothing lost, the destination must be empty.
 */
const { peer, skip } = await requirePeer('postgresql');
let configs: CatalogConfigs | undefined;
let dir = '';
const env = () => configs!.env();
const sqliteConfig = (name: string) => configs!.sqlite(name);
const withCatalog = <T>(config: string, fn: (catalog: Catalog, box: SecretBox) => Promise<T>) =>
  configs!.withCatalog(config, fn);

beforeAll(async () => {
  if (!peer) return;
  configs = await catalogConfigs('copy', peer);
  dir = configs.dir;
}, 60_000);
afterAll(async () => {
  await configs?.close();
});

const run = (n: number, target: string): RunRecord => ({
  id: randomUUID(),
  target,
  agent: 'agent-1',
  trigger: 'schedule',
  dryRun: false,
  status: n % 2 ? 'succeeded' : 'partial',
  startedAt: new Date(Date.UTC(2026, 0, 1, 0, n)).toISOString(),
  finishedAt: new Date(Date.UTC(2026, 0, 1, 0, n, 30)).toISOString(),
  actions: [{ action: 'create', result: 'created', name: `image-${n}`, bytes: n * 1000 }],
  drift: 0,
});

describe('visor catalog copy', () => {
  let source: string;
  let credentials: NewCredentials[] = [];
  let images: Image[] = [];

  beforeAll(async () => {
    if (!peer) return;
    source = await sqliteConfig('source');
    await withCatalog(source, async (catalog, box) => {
      credentials = [
        await addUser(catalog.users, box, 'admin', true),
        await addUser(catalog.users, box, 'alice', false),
      ];
      const alice = credentials[1]!.id;
      images = [
        // Text that SQL and JSON handle differently: quotes, a NUL and emoji in property values.
        makeImage({
          name: 'o\'brien "quoted" ☃',
          properties: { note: 'a\u0000b', emoji: '🐧', empty: '' },
          tags: ['lts'],
        }),
        makeImage({ name: 'private', access: 'private', owner: alice }),
        makeImage({
          name: 'shared',
          access: 'shared',
          owner: alice,
          members: [credentials[0]!.id],
          os: { distro: 'debian' },
        }),
        ...Array.from({ length: 1203 }, (_, i) =>
          makeImage({ name: `bulk-${i}`, size: i, checksums: { sha256: 'a'.repeat(64) } }),
        ),
      ];
      for (const image of images) await catalog.images.create(image);
      await catalog.images.update(images[0]!.id, 1, { name: 'renamed once' });
      images[0] = await catalog.images.get(images[0]!.id);
      for (let n = 0; n < 5; n++) await catalog.runs.create(run(n, n < 3 ? 'prod' : 'lab'));
      await catalog.state.set('retired:prod:x', '2026-01-01T00:00:00.000Z');
      await catalog.state.set('artifact:y', { path: '/cache/y', bytes: 5 });
    });
  }, 120_000);

  const copy = (from: string, to: string) =>
    runVisorAsync(['catalog', 'copy', '--from', from, '--to', to, '--json'], { env: env() });

  const expectSameCatalog = async (config: string) => {
    await withCatalog(config, async (catalog, box) => {
      const copied: Image[] = [];
      for await (const image of allImages(catalog)) copied.push(image);
      expect(copied).toEqual([...images].sort((a, b) => (a.id < b.id ? -1 : 1)));
      expect(copied.find((i) => i.id === images[0]!.id)!.properties['note']).toBe('a\u0000b');
      const users = await catalog.users.list();
      expect(users.map((u) => u.name)).toEqual(['admin', 'alice']);
      for (const user of users) {
        const original = credentials.find((c) => c.name === user.name)!;
        expect(user).toMatchObject({ id: original.id, accessKey: original.accessKey, admin: original.admin });
        // The secret opens with this catalog's own key, and is the one handed out at creation.
        expect(box.open(user.sealedSecret)).toBe(original.secretKey);
      }
      expect((await catalog.runs.list({ target: 'prod' })).map((r) => r.actions[0]!.name)).toEqual([
        'image-2',
        'image-1',
        'image-0',
      ]);
      expect(await catalog.state.list('retired:')).toEqual([['retired:prod:x', '2026-01-01T00:00:00.000Z']]);
      await expect(catalog.leases.get('target:prod')).resolves.toBeUndefined();
    });
  };

  it('copies SQLite into PostgreSQL and back, counts and checksums equal, secrets still open', async (ctx) => {
    if (skip) ctx.skip(skip);
    const central = await configs!.postgres('central', `copy_${randomBytes(4).toString('hex')}`);
    const there = await copy(source, central);
    expect(there.stderr).toBe('');
    expect(there.code).toBe(0);
    const report = JSON.parse(there.stdout) as {
      source: Record<string, { count: number; sha256: string }>;
      destination: Record<string, { count: number; sha256: string }>;
      same: boolean;
      note?: string;
    };
    expect(report.same).toBe(true);
    expect(Object.fromEntries(Object.entries(report.source).map(([k, v]) => [k, v.count]))).toEqual({
      images: 1206,
      users: 2,
      runs: 5,
      state: 2,
    });
    expect(report.destination).toEqual(report.source);
    // The destination had no key: it got the source's, so the sealed secrets were copied as they are.
    expect(report.note).toContain(join(dir, 'central', 'credentials.key'));
    expect(await readFile(join(dir, 'central', 'credentials.key'), 'utf8')).toBe(
      await readFile(join(dir, 'source', 'credentials.key'), 'utf8'),
    );
    await expectSameCatalog(central);

    // Back into a new SQLite catalog whose servers already have another key: secrets are sealed again.
    const back = await sqliteConfig('back');
    await mkdir(join(dir, 'back'), { recursive: true });
    await SecretBox.fromFile(join(dir, 'back', 'credentials.key'));
    const home = await copy(central, back);
    expect(home.stderr).toBe('');
    expect(home.code).toBe(0);
    const again = JSON.parse(home.stdout) as typeof report;
    expect(again.same).toBe(true);
    expect(again.destination).toEqual(report.source);
    expect(again.note).toMatch(/sealed again with the destination's key/);
    await expectSameCatalog(back);

    // Human output: the table of counts and checksums.
    const text = await runVisorAsync(
      [
        'catalog',
        'copy',
        '--from',
        back,
        '--to',
        await configs!.postgres('text', `copy_${randomBytes(4).toString('hex')}`),
      ],
      { env: env() },
    );
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^images\s+1206\s+1206\s+[0-9a-f]{16}\s+[0-9a-f]{16}\s+same$/m);
    expect(text.stdout).toMatch(/^users\s+2\s+2\s+.*same$/m);
  }, 240_000);

  it('refuses a destination that is not empty, changing nothing', async (ctx) => {
    if (skip) ctx.skip(skip);
    const target = await configs!.postgres('busy', `copy_${randomBytes(4).toString('hex')}`);
    await withCatalog(
      target,
      async (catalog) => void (await catalog.images.create(makeImage({ name: 'already-here' }))),
    );
    const result = await runVisorAsync(['catalog', 'copy', '--from', source, '--to', target], { env: env() });
    expect(result.code).toBe(6);
    expect(result.stderr.trimEnd().split('\n')).toEqual([
      'visor: the destination catalog is not empty (1 images): copy only into a new catalog',
    ]);
    expect(result.stderr).not.toMatch(stackLine);
    await withCatalog(target, async (catalog) => expect(await catalog.images.count()).toBe(1));
  }, 60_000);

  it('refuses to copy users whose secrets the source key cannot open', async (ctx) => {
    if (skip) ctx.skip(skip);
    const lost = await sqliteConfig('lost-key');
    await withCatalog(lost, async (catalog, box) => void (await addUser(catalog.users, box, 'bob', false)));
    await rm(join(dir, 'lost-key', 'credentials.key'));
    const target = await configs!.postgres('lost-target', `copy_${randomBytes(4).toString('hex')}`);
    const result = await runVisorAsync(['catalog', 'copy', '--from', lost, '--to', target], { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^visor: the source catalog has 1 users, but its credentials key .*lost-key\/credentials\.key is missing/,
    );
    await withCatalog(target, async (catalog) => expect(await catalog.users.list()).toEqual([]));
  }, 60_000);
});
