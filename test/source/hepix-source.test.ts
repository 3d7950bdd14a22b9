import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HepixSource, type HepixSourceOptions } from '../../core/source/hepix/hepix-source.js';
import { isUnchanged, refusalOf, type SourceSnapshot } from '../../core/source/port.js';
import { sourceContract } from '../../core/testing/source-contract.js';
import { requirePeer } from '../peers/index.js';
import { FileServer } from './support/file-server.js';
import { hepixList, inDays, type FixtureImage } from './support/hepix-fixtures.js';
import { smimeSign, TestCa, type Signer } from './support/test-pki.js';

interface Pki {
  caPath: string;
  trusted: TestCa;
  rogue: TestCa;
  endorser: Signer;
  other: Signer;
  expired: Signer;
  stranger: Signer;
}

function makePki(): Pki {
  const root = mkdtempSync(join(tmpdir(), 'visor-hepix-pki-'));
  const trusted = new TestCa('Visor Test CA', root);
  const rogue = new TestCa('Rogue CA', root);
  const caPath = join(root, 'certificates');
  trusted.installInto(caPath);
  return {
    caPath,
    trusted,
    rogue,
    endorser: trusted.issue('Endorser One'),
    other: trusted.issue('Endorser Two'),
    expired: trusted.issue('Endorser Expired', { expired: true }),
    stranger: rogue.issue('Endorser One'),
  };
}

const openssl = await requirePeer('openssl');

async function setUp() {
  const pki = makePki();
  const server = await new FileServer().start();
  const images: FixtureImage[] = [
    { id: 'img-alma', title: 'AlmaLinux 9', version: '9.4-1', data: randomBytes(200_003), url: server.url('/images/alma.qcow2') },
    { id: 'img-tiny', title: 'Tiny', version: '1', data: randomBytes(5), url: server.url('/images/tiny.qcow2') },
  ];
  for (const image of images) server.files.set(new URL(image.url).pathname, image.data);
  const list = (signer: Signer, extra: Partial<Parameters<typeof hepixList>[0]> = {}) =>
    hepixList({ signer, version: '20261201.1', images, ...extra });
  server.files.set('/lists/good.list', smimeSign(list(pki.endorser), pki.endorser));
  const source = (path: string, options: Partial<HepixSourceOptions> = {}) =>
    new HepixSource({ url: server.url(path), caPath: pki.caPath, allowPrivateNetworks: true, ...options });
  return { pki, server, images, list, source };
}

let ctx: Awaited<ReturnType<typeof setUp>>;

sourceContract('hepix', async () => {
  ctx ??= await setUp();
  const { pki, server, list, source } = ctx;
  const signed = smimeSign(list(pki.endorser), pki.endorser);
  const text = signed.toString('latin1');
  const tampered = Buffer.from(text.replace('"hv:ram_minimum": "1024"', '"hv:ram_minimum": "2048"'), 'latin1');
  const files: Record<string, Buffer> = {
    '/lists/tampered.list': tampered,
    '/lists/unsigned.list': list(pki.endorser),
    '/lists/expired-list.list': smimeSign(list(pki.endorser, { expires: inDays(-1) }), pki.endorser),
    '/lists/expired-cert.list': smimeSign(list(pki.expired), pki.expired),
    '/lists/wrong-ca.list': smimeSign(list(pki.stranger), pki.stranger),
    '/lists/endorser-mismatch.list': smimeSign(list(pki.endorser), pki.other),
    '/lists/not-json.list': smimeSign(Buffer.from('hello, not a list'), pki.endorser),
    '/lists/bad-shape.list': smimeSign(Buffer.from('{"hv:imagelist":{"dc:identifier":"x"}}'), pki.endorser),
  };
  for (const [path, body] of Object.entries(files)) server.files.set(path, body);
  return {
    source: async () => source('/lists/good.list'),
    expectedBytes: async () => new Map(ctx.images.map((i) => [i.id, i.data])),
    refused: async () => [
      { title: 'tampered list', source: source('/lists/tampered.list'), reason: 'badSignature' as const },
      { title: 'unsigned list', source: source('/lists/unsigned.list'), reason: 'unsigned' as const },
      { title: 'expired list', source: source('/lists/expired-list.list'), reason: 'expired' as const },
      { title: 'expired signer certificate', source: source('/lists/expired-cert.list'), reason: 'expired' as const },
      { title: 'signer from an untrusted CA', source: source('/lists/wrong-ca.list'), reason: 'untrusted' as const },
      { title: 'signer is not the named endorser', source: source('/lists/endorser-mismatch.list'), reason: 'endorser' as const },
      {
        title: 'endorser not accepted by the subscription',
        source: source('/lists/good.list', { endorsers: [{ dn: pki.other.dn }] }),
        reason: 'endorser' as const,
      },
      { title: 'signed text that is not JSON', source: source('/lists/not-json.list'), reason: 'malformed' as const },
      { title: 'JSON that is not an image list', source: source('/lists/bad-shape.list'), reason: 'malformed' as const },
    ],
    unreachable: async () => new HepixSource({ url: 'http://127.0.0.1:9/list', caPath: pki.caPath, allowPrivateNetworks: true }),
  };
}, openssl.skip);

describe.skipIf(openssl.skip)('HEPiX image list source', () => {
  beforeAll(async () => {
    ctx ??= await setUp();
  }, 120_000);
  afterAll(async () => {
    await ctx?.server.stop();
  });

  const snapshot = async (source: HepixSource, previous?: string): Promise<SourceSnapshot> => {
    const listing = await source.list(previous ? { previous } : {});
    if (isUnchanged(listing)) throw new Error('expected a snapshot');
    return listing;
  };

  it('maps the list: names, versions, digests, size, format, arch, os, expiry, endorser, VO', async () => {
    const source = ctx.source('/lists/good.list', { endorsers: [{ dn: ctx.pki.endorser.dn, ca: ctx.pki.trusted.dn }] });
    const got = await snapshot(source);
    expect(got.revision).toBe('20261201.1');
    expect(got.signer).toBe(ctx.pki.endorser.dn);
    const alma = got.entries.find((e) => e.key === 'img-alma')!;
    expect(alma).toMatchObject({
      version: '9.4-1',
      name: 'AlmaLinux 9',
      size: 200_003,
      diskFormat: 'qcow2',
      containerFormat: 'bare',
      architecture: 'x86_64',
      os: { type: 'linux', distro: 'almalinux', version: '9.4' },
      endorser: ctx.pki.endorser.dn,
    });
    expect(alma.checksums.sha512).toMatch(/^[0-9a-f]{128}$/);
    expect(alma.properties).toMatchObject({ 'hepix:vo': 'visor.test', 'hepix:ram_minimum': '1024', 'hepix:identifier': 'img-alma' });
    expect(Date.parse(alma.expiresAt!)).toBeGreaterThan(Date.now());
    await source.close();
  });

  it('says unchanged for the same list, refuses an older or silently changed one (rollback)', async () => {
    const { server, pki, list } = ctx;
    server.files.set('/lists/moving.list', smimeSign(list(pki.endorser, { version: '5' }), pki.endorser));
    const source = ctx.source('/lists/moving.list');
    const first = await snapshot(source);
    expect(await source.list({ previous: first.cursor! })).toEqual({ unchanged: true, cursor: first.cursor });
    server.files.set('/lists/moving.list', smimeSign(list(pki.endorser, { version: '4' }), pki.endorser));
    expect(refusalOf(await source.list({ previous: first.cursor! }).catch((e: unknown) => e))).toBe('rollback');
    server.files.set('/lists/moving.list', smimeSign(list(pki.endorser, { version: '5', images: [] }), pki.endorser));
    expect(refusalOf(await source.list({ previous: first.cursor! }).catch((e: unknown) => e))).toBe('rollback');
    server.files.set('/lists/moving.list', smimeSign(list(pki.endorser, { version: '10', images: [] }), pki.endorser));
    expect((await snapshot(source, first.cursor!)).entries).toEqual([]);
    await source.close();
  });

  it('accepts an unsigned list only when the subscription says so', async () => {
    const source = new HepixSource({ url: ctx.server.url('/lists/unsigned.list'), requireSignature: false, allowPrivateNetworks: true });
    const got = await snapshot(source);
    expect(got.entries.length).toBe(2);
    expect(got.signer).toBeUndefined();
    await source.close();
  });

  it('refuses a list whose image URL is not http(s)', async () => {
    const { server, pki } = ctx;
    const bad = hepixList({
      signer: pki.endorser,
      version: '1',
      images: [{ id: 'x', title: 'x', version: '1', data: Buffer.from('x'), url: 'file:///etc/shadow' }],
    });
    server.files.set('/lists/file-url.list', smimeSign(bad, pki.endorser));
    const error = await ctx.source('/lists/file-url.list').list().catch((e: unknown) => e);
    expect(refusalOf(error)).toBe('unsafePath');
  });

  it('refuses lists on private addresses unless allowed (SSRF)', async () => {
    const error = await ctx.source('/lists/good.list', { allowPrivateNetworks: false }).list().catch((e: unknown) => e);
    expect(String((error as Error).message)).toMatch(/private|local|reserved/);
  });
});
