import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { MongoCatalog } from '../../core/catalog/mongodb/mongodb-catalog.js';
import { catalogContract } from '../contract/catalog-contract.js';

// No MongoDB server can be installed on these machines (no Debian package, and the npm
// packages that provide one download it at run time); point this at a real one to run it.
const uri = process.env['VISOR_TEST_MONGODB_URI'];

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
  uri
    ? undefined
    : {
        allowed: 'mongodb',
        reason:
          'VISOR_TEST_MONGODB_URI is not set: no MongoDB server can run on this machine ' +
          '(set it to a mongodb:// URI to run this suite)',
      },
);
