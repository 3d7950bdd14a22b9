import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MongoClient } from 'mongodb';
import { MongoCatalog } from '../../core/catalog/mongodb/mongodb-catalog.js';
import { catalogContract } from '../../core/testing/catalog-contract.js';
import { skipAllowed } from '../setup/allowed-skips.js';

// No MongoDB server can be installed on these machines (no Debian package, and the npm
// packages that provide one download it at run time); point this at a real one to run it.
const uri = process.env['VISOR_TEST_MONGODB_URI'];
const noMongo =
  'VISOR_TEST_MONGODB_URI is not set: no MongoDB server can run on this machine ' +
  '(set it to a mongodb:// URI to run this suite)';

catalogContract(
  'mongodb',
  async () => {
    const database = `visor_test_${randomBytes(4).toString('hex')}`;
    let n = 0;
    const prefixes = new Map<MongoCatalog, string>();
    const openWith = async (collectionPrefix: string) => {
      const catalog = new MongoCatalog({ uri: uri!, database, collectionPrefix, serverSelectionTimeoutMS: 5000 });
      await catalog.init();
      prefixes.set(catalog, collectionPrefix);
      return catalog;
    };
    return {
      open: () => openWith(`c${n++}_`),
      reopen: (catalog) => openWith(prefixes.get(catalog as MongoCatalog)!),
      cleanup: async () => {
        const client = new MongoClient(uri!);
        try {
          await client.db(database).dropDatabase();
        } finally {
          await client.close();
        }
      },
    };
  },
  uri ? undefined : { allowed: 'mongodb', reason: noMongo },
);

describe('mongodb catalog: owner names from before user ids are migrated once', () => {
  // Needs VISOR_TEST_MONGODB_URI, as the contract above.
  it('turns owner and member names into ids without bumping revisions', async (ctx) => {
    if (!uri) skipAllowed(ctx, 'mongodb', noMongo);
    const { makeImage } = await import('../support/images.js');
    const database = `visor_test_${randomBytes(4).toString('hex')}`;
    const client = new MongoClient(uri!);
    try {
      const db = client.db(database);
      const own = makeImage({ name: 'legacy-own', access: 'private', owner: 'alice' });
      const members = ['alice', 'ghost'];
      const shared = makeImage({ name: 'legacy-shared', access: 'shared', owner: 'ghost', members });
      const { id: ownId, ...ownRest } = own;
      const { id: sharedId, ...sharedRest } = shared;
      const docs = [
        { _id: ownId, ...ownRest },
        { _id: sharedId, ...sharedRest },
      ];
      await db.collection('m_images').insertMany(docs as never[]);
      const legacyUser = {
        accessKey: 'AKIAALICEXXXXXXXXXXX',
        sealedSecret: 'v1.sealed',
        admin: false,
        createdAt: '2025-01-01T00:00:00.000Z',
      };
      await db.collection('m_users').insertOne({ _id: 'alice', ...legacyUser } as never);
      const catalog = new MongoCatalog({ uri: uri!, database, collectionPrefix: 'm_', serverSelectionTimeoutMS: 5000 });
      await catalog.init();
      try {
        const alice = (await catalog.users.findByName('alice'))!;
        expect(alice.id).toMatch(/^[0-9a-f-]{36}$/);
        await expect(catalog.images.get(own.id)).resolves.toMatchObject({ owner: alice.id, revision: own.revision });
        const migrated = catalog.images.get(shared.id);
        await expect(migrated).resolves.toMatchObject({ owner: 'ghost', members: [alice.id, 'ghost'] });
        await catalog.users.delete('alice');
        const newcomer = { ...legacyUser, accessKey: 'AKIANEWALICEXXXXXXXX', createdAt: '2026-01-01T00:00:00.000Z' };
        await catalog.users.create({ id: '11111111-1111-4111-8111-111111111111', name: 'alice', ...newcomer });
      } finally {
        await catalog.close();
      }
      const again = new MongoCatalog({ uri: uri!, database, collectionPrefix: 'm_', serverSelectionTimeoutMS: 5000 });
      await again.init();
      try {
        const image = await again.images.get(own.id);
        expect(image.owner).not.toBe('11111111-1111-4111-8111-111111111111');
      } finally {
        await again.close();
      }
    } finally {
      await client.db(database).dropDatabase();
      await client.close();
    }
  });
});
