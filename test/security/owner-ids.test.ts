import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealingBox } from '../../agent/serve.js';
import { addUser } from '../../agent/service/users.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { OWNER_IDS_MIGRATION } from '../../core/catalog/users.js';
import { makeImage } from '../support/images.js';
import { rawRequest } from '../support/raw-http.js';
import { startSecureServer, type SecureServer } from './harness.js';

/**
 * Owners are users' stable ids. The attack: a user is removed and someone registers the same
 * name; they must not inherit the old user's private (or shared) images. Catalogs from before
 * keep working: owner and member names are turned into ids once, on open.
 */
describe('a user re-created under the same name inherits nothing', () => {
  let t: SecureServer;
  let privateId: string;
  let sharedId: string;

  const post = async (as: 'bob' | 'carol', image: Record<string, unknown>) => {
    const r = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ image })),
      as: t.users[as],
    });
    expect(r.status, r.body.toString()).toBe(201);
    return (r.json() as { image: Record<string, unknown> }).image;
  };

  beforeAll(async () => {
    t = await startSecureServer();
    const mine = await post('bob', { name: 'bobs-private', architecture: 'x86_64', access: 'private' });
    expect(mine).toMatchObject({ owner: 'bob', owner_id: t.users.bob.id });
    privateId = String(mine['_id']);
    const shared = await post('carol', {
      name: 'shared-with-bob',
      architecture: 'x86_64',
      access: 'shared',
      members: ['bob'],
    });
    expect(shared).toMatchObject({ members: ['bob'] });
    sharedId = String(shared['_id']);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('the new "bob" sees, lists and changes none of the old one\'s images', async () => {
    const oldBob = t.users.bob;
    expect((await rawRequest(t.url, { method: 'GET', path: `/images/${privateId}/meta`, as: oldBob })).status).toBe(
      200,
    );
    await t.server.catalog.users.delete('bob');
    const newBob = await addUser(t.server.catalog.users, await sealingBox(t.runtime), 'bob', false);
    expect(newBob.id).not.toBe(oldBob.id);
    for (const [method, path] of [
      ['GET', `/images/${privateId}/meta`],
      ['HEAD', `/images/${privateId}`],
      ['GET', `/images/${sharedId}/meta`],
      ['DELETE', `/images/${privateId}`],
    ] as const) {
      expect((await rawRequest(t.url, { method, path, as: newBob })).status, `${method} ${path}`).toBe(404);
    }
    const listed = await rawRequest(t.url, { method: 'GET', path: '/images/detail', as: newBob });
    expect((listed.json() as { images: { _id: string }[] }).images.map((i) => i._id)).not.toEqual(
      expect.arrayContaining([privateId]),
    );
    const byOwner = await rawRequest(t.url, {
      method: 'GET',
      path: '/images/detail',
      query: [['owner', 'bob']],
      as: t.users.admin,
    });
    expect((byOwner.json() as { images: unknown[] }).images).toEqual([]);
    // Admins still see the image, owned by the old id (whose user is gone).
    const meta = await rawRequest(t.url, { method: 'GET', path: `/images/${privateId}/meta`, as: t.users.admin });
    expect((meta.json() as { image: Record<string, unknown> }).image).toMatchObject({
      owner: oldBob.id,
      owner_id: oldBob.id,
    });
  });

  it('owners and members are set by name (or id) and refused when no such user exists', async () => {
    const byName = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ image: { name: 'for-carol', architecture: 'x86_64', owner: 'carol' } })),
      as: t.users.admin,
    });
    expect((byName.json() as { image: Record<string, unknown> }).image).toMatchObject({
      owner: 'carol',
      owner_id: t.users.carol.id,
    });
    const unknown = await rawRequest(t.url, {
      method: 'POST',
      path: '/images',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(
        JSON.stringify({ image: { name: 'x', architecture: 'x86_64', access: 'shared', members: ['nobody'] } }),
      ),
      as: t.users.carol,
    });
    expect(unknown.status).toBe(400);
    expect(unknown.json()).toMatchObject({ message: expect.stringMatching(/no user named nobody/) });
  });
});

describe('catalogs from before owner ids are migrated once', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-owner-ids-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('turns owner and member names into ids without bumping revisions, and never again', async () => {
    const path = join(dir, 'catalog.db');
    // A catalog as the previous version left it: users without ids, images owned by name.
    const seed = new SqliteCatalog({ path });
    await seed.init();
    const own = await seed.images.create(makeImage({ name: 'legacy-own', access: 'private', owner: 'alice' }));
    const shared = await seed.images.create(
      makeImage({ name: 'legacy-shared', access: 'shared', owner: 'ghost', members: ['alice', 'ghost', 'bob'] }),
    );
    await seed.close();
    const raw = new Database(path);
    const user = (name: string) =>
      JSON.stringify({
        name,
        accessKey: `AKIA${name.toUpperCase().padEnd(16, 'X')}`,
        sealedSecret: 'v1.sealed',
        admin: false,
        createdAt: '2025-01-01T00:00:00.000Z',
      });
    raw
      .prepare('INSERT INTO users (name, access_key, doc) VALUES (?, ?, ?)')
      .run('alice', 'AKIAALICEXXXXXXXXXXX', user('alice'));
    raw
      .prepare('INSERT INTO users (name, access_key, doc) VALUES (?, ?, ?)')
      .run('bob', 'AKIABOBXXXXXXXXXXXXX', user('bob'));
    raw.prepare('DELETE FROM state WHERE key = ?').run(OWNER_IDS_MIGRATION);
    raw.close();

    const catalog = new SqliteCatalog({ path });
    await catalog.init();
    const alice = (await catalog.users.findByName('alice'))!;
    const bob = (await catalog.users.findByName('bob'))!;
    expect(alice.id).toMatch(/^[0-9a-f-]{36}$/);
    await expect(catalog.users.findById(alice.id)).resolves.toMatchObject({ name: 'alice' });
    await expect(catalog.images.get(own.id)).resolves.toMatchObject({ owner: alice.id, revision: own.revision });
    // "ghost" is no user: left as it is, matching nobody who can log in.
    await expect(catalog.images.get(shared.id)).resolves.toMatchObject({
      owner: 'ghost',
      members: [alice.id, 'ghost', bob.id],
      revision: shared.revision,
    });

    // Alice leaves; a new "alice" arrives; the catalog is opened again: nothing moves to her.
    await catalog.users.delete('alice');
    await catalog.users.create({
      id: '11111111-1111-4111-8111-111111111111',
      name: 'alice',
      accessKey: 'AKIANEWALICEXXXXXXXX',
      sealedSecret: 'v1.sealed',
      admin: false,
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    await catalog.close();
    const again = new SqliteCatalog({ path });
    await again.init();
    await expect(again.images.get(own.id)).resolves.toMatchObject({ owner: alice.id });
    await again.close();
  });
});
