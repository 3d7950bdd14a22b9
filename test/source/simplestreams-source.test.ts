import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SimplestreamsSource,
  type SimplestreamsSourceOptions,
} from '../../core/source/simplestreams/simplestreams-source.js';
import { isUnchanged, refusalOf, type SourceSnapshot } from '../../core/source/port.js';
import { sourceContract } from '../../core/testing/source-contract.js';
import { FileServer } from './support/file-server.js';
import { contentId, imagePath, indexDoc, productsDoc, type StreamImage } from './support/stream-fixtures.js';
import { TestGpgKey } from './support/test-gpg.js';

const images: StreamImage[] = [
  {
    product: 'com.ubuntu.cloud:server:22.04:amd64',
    version: '20261101',
    release: 'jammy',
    arch: 'amd64',
    data: randomBytes(1000),
  },
  {
    product: 'com.ubuntu.cloud:server:22.04:amd64',
    version: '20261201.1',
    release: 'jammy',
    arch: 'amd64',
    data: randomBytes(150_001),
  },
  {
    product: 'com.ubuntu.cloud:server:24.04:arm64',
    version: '20261130',
    release: 'noble',
    arch: 'arm64',
    data: randomBytes(70_000),
  },
  {
    product: 'com.ubuntu.cloud:server:24.04:arm64',
    version: '20261130',
    release: 'noble',
    arch: 'arm64',
    data: Buffer.from('m'),
    ftype: 'manifest',
    path: 'm',
  },
];

let server: FileServer;
let key: TestGpgKey;
let rogue: TestGpgKey;

async function setUp(): Promise<void> {
  if (server) return;
  server = await new FileServer().start();
  key = new TestGpgKey('visor stream signer <streams@visor.invalid>');
  rogue = new TestGpgKey('rogue <rogue@visor.invalid>');
  for (const image of images) server.files.set(`/mirror/${imagePath(image)}`, image.data);
  const products = productsDoc(images);
  server.files.set('/mirror/streams/v1/index.json', indexDoc('streams/v1/products.json'));
  server.files.set('/mirror/streams/v1/products.json', products);
  server.files.set('/mirror/streams/v1/index.sjson', key.clearsign(indexDoc('streams/v1/products.sjson')));
  server.files.set('/mirror/streams/v1/products.sjson', key.clearsign(products));
  const signed = key.clearsign(products).toString('latin1');
  server.files.set('/tampered/streams/v1/index.sjson', key.clearsign(indexDoc('streams/v1/products.sjson')));
  server.files.set('/tampered/streams/v1/products.sjson', Buffer.from(signed.replace('"jammy"', '"jammY"'), 'latin1'));
  server.files.set('/rogue/streams/v1/index.sjson', rogue.clearsign(indexDoc('streams/v1/products.sjson')));
  server.files.set('/escape/streams/v1/index.json', indexDoc('../../etc/passwd'));
  server.files.set('/absolute/streams/v1/index.json', indexDoc('/etc/passwd'));
  server.files.set('/notjson/streams/v1/index.json', Buffer.from('<html>'));
}

const make = (root: string, options: Partial<SimplestreamsSourceOptions> = {}) =>
  new SimplestreamsSource({ url: server.url(root), allowPrivateNetworks: true, ...options });

const expected = () =>
  new Map(
    images
      .filter((i) => i.ftype === undefined && i.version !== '20261101')
      .map((i) => [`${contentId}/${i.product}/disk1.img`, i.data]),
  );

sourceContract('simplestreams (signed)', async () => {
  await setUp();
  return {
    source: async () => make('/mirror/', { keyring: key.keyring }),
    expectedBytes: async () => expected(),
    refused: async () => [
      {
        title: 'tampered products',
        source: make('/tampered/', { keyring: key.keyring }),
        reason: 'badSignature' as const,
      },
      {
        title: 'signed by a key not in the keyring',
        source: make('/rogue/', { keyring: key.keyring }),
        reason: 'untrusted' as const,
      },
      {
        title: 'unsigned stream where signatures are required',
        source: make('/mirror/', { keyring: key.keyring, index: 'streams/v1/index.json' }),
        reason: 'unsigned' as const,
      },
      { title: 'a path out of the mirror', source: make('/escape/'), reason: 'unsafePath' as const },
      { title: 'an absolute path', source: make('/absolute/'), reason: 'unsafePath' as const },
      { title: 'an index that is not JSON', source: make('/notjson/'), reason: 'malformed' as const },
    ],
    unreachable: async () => new SimplestreamsSource({ url: 'http://127.0.0.1:9/', allowPrivateNetworks: true }),
  };
});

sourceContract('simplestreams (unsigned, checksums only)', async () => {
  await setUp();
  return { source: async () => make('/mirror/'), expectedBytes: async () => expected() };
});

describe('simplestreams source', () => {
  beforeAll(setUp, 120_000);
  afterAll(async () => server?.stop());

  const snapshot = async (source: SimplestreamsSource): Promise<SourceSnapshot> => {
    const listing = await source.list();
    if (isUnchanged(listing)) throw new Error('expected a snapshot');
    return listing;
  };

  it('offers the newest version of each image item, flattened and mapped as sstream-mirror-glance does', async () => {
    const got = await snapshot(make('/mirror/', { keyring: key.keyring }));
    expect(got.entries.map((e) => `${e.key}@${e.version}`).sort()).toEqual([
      `${contentId}/com.ubuntu.cloud:server:22.04:amd64/disk1.img@20261201.1`,
      `${contentId}/com.ubuntu.cloud:server:24.04:arm64/disk1.img@20261130`,
    ]);
    const jammy = got.entries.find((e) => e.key.includes('22.04'))!;
    expect(jammy).toMatchObject({
      name: 'ubuntu-jammy-amd64-20261201.1',
      architecture: 'x86_64',
      os: { distro: 'ubuntu', version: '22.04' },
      size: 150_001,
      location: { url: server.url('/mirror/server/jammy/20261201.1/jammy-amd64.img') },
    });
    expect(jammy.checksums.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(jammy.properties).toMatchObject({
      'simplestreams:content_id': contentId,
      'simplestreams:product_name': 'com.ubuntu.cloud:server:22.04:amd64',
      'simplestreams:version_name': '20261201.1',
      'simplestreams:item_name': 'disk1.img',
      'simplestreams:release': 'jammy',
    });
    expect(got.signer).toMatch(/^[0-9A-F]{40}$/);
    expect(got.entries.find((e) => e.key.includes('24.04'))!.architecture).toBe('aarch64');
  });

  it('applies simplestreams filters before choosing versions', async () => {
    const only = await snapshot(make('/mirror/', { filters: ['release=jammy', 'version_name!~^2026120'] }));
    expect(only.entries.map((e) => e.version)).toEqual(['20261101']);
  });

  it('refuses a signed stream when no keyring is configured to check it', async () => {
    const error = await make('/mirror/', { index: 'streams/v1/index.sjson' })
      .list()
      .catch((e: unknown) => e);
    expect(refusalOf(error)).toBe('untrusted');
  });
});
