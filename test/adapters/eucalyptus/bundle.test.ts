import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleAndUpload, partFileName, type BundleResult } from '../../../adapters/eucalyptus/driver-bundle.js';
import { deriveBundleKey, rsaDecryptHex } from '../../../adapters/eucalyptus/driver-bundle-crypto.js';
import { buildManifest, parseManifest } from '../../../adapters/eucalyptus/mapper-manifest.js';
import { WalrusBundles } from '../../../adapters/eucalyptus/client-walrus.js';
import { isVisorError } from '../../../core/errors.js';
import { silentLogger } from '../../../core/logging/logger.js';
import { createS3Client } from '../../../core/wire/s3/client.js';
import { repoRoot } from '../../support/cli.js';
import { accountId, startWorld, type EucalyptusWorld } from './harness.js';

/**
 * The bundle format and the streaming bundler, against the real S3 peer: the manifest has the
 * real euca-tools manifest's structure, euca2ools' own tools (openssl, gzip, tar) give the
 * image back from the parts with the key in the manifest, parts go up while the image is still
 * being read, and memory stays at partSize × concurrency.
 */

const run = promisify(execFile);
const started = await startWorld('euca-bundle');
const skip = 'skip' in started ? started.skip : undefined;
const world = 'skip' in started ? undefined : (started as EucalyptusWorld);
afterAll(async () => world?.close());

const fixtureManifest = join(
  repoRoot,
  'test/fixtures/eucalyptus-ec2/bundle-manifests/euca-tools-1.0-vmlinuz-2.6.28-11-generic.manifest.xml',
);

/** Every element of a document as a path, in document order, with its attribute names. */
function elementPaths(xml: string): string[] {
  const tree = new XMLParser({ ignoreAttributes: false, preserveOrder: true, attributeNamePrefix: '@' }).parse(
    xml,
  ) as unknown[];
  const out: string[] = [];
  const walk = (nodes: unknown[], prefix: string) => {
    for (const node of nodes) {
      const entries = Object.entries(node as Record<string, unknown>).filter(
        ([k]) => k !== ':@' && k !== '#text' && !k.startsWith('?'),
      );
      for (const [name, children] of entries) {
        const attributes = Object.keys(((node as Record<string, unknown>)[':@'] ?? {}) as object).sort();
        out.push(`${prefix}${name}${attributes.length > 0 ? `[${attributes.join(',')}]` : ''}`);
        walk(children as unknown[], `${prefix}${name}/`);
      }
    }
  };
  walk(tree, '');
  return out;
}

function walrus(): WalrusBundles {
  const { peer, bucket } = world!;
  return new WalrusBundles({
    client: createS3Client({ ...peer, forcePathStyle: true }),
    bucket,
    acl: 'none',
    createBucket: false,
    logger: silentLogger,
  });
}

async function bundleOf(
  data: Buffer | (() => Readable),
  options: {
    name: string;
    size?: number;
    partSize?: number;
    concurrency?: number;
    onChunk?: (bytes: number) => Promise<void>;
  },
): Promise<{ result: BundleResult; key: string; iv: string }> {
  const { key, iv } = deriveBundleKey(world!.certs.identity.userPrivateKey, [options.name]);
  const source = typeof data === 'function' ? data() : Readable.from([data]);
  const w = walrus();
  try {
    const result = await bundleAndUpload({
      source,
      size: options.size ?? (data as Buffer).length,
      expected: typeof data === 'function' ? {} : { sha256: createHash('sha256').update(data).digest('hex') },
      name: options.name,
      keyPrefix: 'b/',
      key,
      iv,
      partSize: options.partSize ?? 256 * 1024,
      concurrency: options.concurrency ?? 2,
      gzipLevel: 6,
      sink: { put: (k, body, md5, signal) => w.put(k, body, md5, signal) },
    });
    return { result, key, iv };
  } finally {
    w.close();
  }
}

const test = (title: string, fn: () => Promise<void>, timeout = 120_000) =>
  it(
    title,
    async (ctx) => {
      if (skip) ctx.skip(skip);
      await fn();
    },
    timeout,
  );

describe('EC2 bundles', () => {
  test('the manifest has the structure of the real euca-tools manifest (and the real one parses)', async () => {
    const real = await readFile(fixtureManifest, 'utf8');
    const parsed = parseManifest(real, 'fixture');
    expect(parsed.image).toMatchObject({
      name: 'vmlinuz-2.6.28-11-generic',
      user: '11111',
      size: 3522336,
      bundled_size: 3486624,
    });
    expect(parsed.image.parts.part.map((p) => p.filename)).toEqual(['vmlinuz-2.6.28-11-generic.part.0']);

    const data = randomBytes(200 * 1024);
    const { result, key, iv } = await bundleOf(data, { name: 'visor-structure' });
    expect(result.parts.length).toBe(1);
    const ours = buildManifest(
      {
        architecture: 'x86_64',
        name: 'visor-structure',
        user: accountId,
        type: 'machine',
        tarSha1: result.tarSha1,
        size: result.size,
        bundledSize: result.bundledSize,
        key,
        iv,
        parts: result.parts.map((p) => ({ filename: p.filename, sha1: p.sha1 })),
        bundlerVersion: '1',
      },
      world!.certs.identity,
    );
    // Two differences, both between euca2ools generations: current euca2ools writes bundler/release
    // and no algorithm attribute on the IVs (euca2ools' bundle manifest writer); euca-tools 1.0 did the reverse.
    const expected = elementPaths(real)
      .map((p) => p.replace(/^(manifest\/image\/(ec2|user)_encrypted_iv)\[@algorithm\]$/, '$1'))
      .flatMap((p) => (p === 'manifest/bundler/version' ? [p, 'manifest/bundler/release'] : [p]));
    expect(elementPaths(ours)).toEqual(expected);
    // The signed portion is a byte range of the document: <machine_configuration>...</image>.
    expect(ours).toMatch(
      /<\/bundler><machine_configuration>.*<\/image><signature>[0-9a-f]{512}<\/signature><\/manifest>$/,
    );
    expect(real).toMatch(
      /<\/bundler><machine_configuration>.*<\/image><signature>[0-9a-f]{512}<\/signature><\/manifest>$/,
    );
  });

  test("euca2ools' tools give back the exact image from the parts, with the key in the manifest", async () => {
    const data = randomBytes(900 * 1024 + 11);
    const name = `visor-openssl-${randomBytes(3).toString('hex')}`;
    const { result, key, iv } = await bundleOf(data, { name });
    expect(result.parts.map((p) => p.filename)).toEqual(result.parts.map((_, i) => partFileName(name, i)));
    expect(partFileName(name, 0)).toBe(`${name}.part.00`);
    expect(result.parts.length).toBeGreaterThan(3);
    expect(result.parts.slice(0, -1).every((p) => p.size === 256 * 1024)).toBe(true);
    const manifest = parseManifest(
      buildManifest(
        {
          architecture: 'x86_64',
          name,
          user: accountId,
          type: 'machine',
          tarSha1: result.tarSha1,
          size: result.size,
          bundledSize: result.bundledSize,
          key,
          iv,
          parts: result.parts.map((p) => ({ filename: p.filename, sha1: p.sha1 })),
          bundlerVersion: '1',
        },
        world!.certs.identity,
      ),
      'ours',
    );
    const dir = world!.certs.dir;
    const userKey = join(dir, 'user.key');
    // openssl pkeyutl -decrypt with the user's key, as euca-unbundle does (rsautl before OpenSSL 3).
    await writeFile(join(dir, 'enc.bin'), Buffer.from(manifest.image.user_encrypted_key['#text'], 'hex'));
    const keyText = (
      await run('openssl', ['pkeyutl', '-decrypt', '-inkey', userKey, '-in', join(dir, 'enc.bin')], {
        encoding: 'buffer',
      })
    ).stdout.toString();
    await writeFile(join(dir, 'enc.bin'), Buffer.from(manifest.image.user_encrypted_iv, 'hex'));
    const ivText = (
      await run('openssl', ['pkeyutl', '-decrypt', '-inkey', userKey, '-in', join(dir, 'enc.bin')], {
        encoding: 'buffer',
      })
    ).stdout.toString();
    expect(keyText).toBe(key);
    expect(ivText).toBe(iv);
    // And the adapter's own decryption (used by download) agrees.
    expect(rsaDecryptHex(world!.certs.identity.userPrivateKey, manifest.image.user_encrypted_key['#text'], 'key')).toBe(
      key,
    );

    const parts: Buffer[] = [];
    for (const part of manifest.image.parts.part) {
      const out = await world!.s3.send(new GetObjectCommand({ Bucket: world!.bucket, Key: `b/${part.filename}` }));
      const bytes = Buffer.from(await out.Body!.transformToByteArray());
      expect(createHash('sha1').update(bytes).digest('hex')).toBe(part.digest['#text']);
      parts.push(bytes);
    }
    const bundled = Buffer.concat(parts);
    expect(bundled.length).toBe(manifest.image.bundled_size);
    const bundleFile = join(dir, `${name}.bundle`);
    await writeFile(bundleFile, bundled);
    const tarFile = join(dir, `${name}.tar`);
    await run('bash', [
      '-c',
      `openssl enc -d -aes-128-cbc -K ${keyText} -iv ${ivText} -in ${bundleFile} | gzip -dc > ${tarFile}`,
    ]);
    const tar = await readFile(tarFile);
    expect(createHash('sha1').update(tar).digest('hex')).toBe(manifest.image.digest['#text']);
    const listing = (await run('tar', ['-tvf', tarFile])).stdout.trim().split('\n');
    expect(listing).toHaveLength(1);
    expect(listing[0]).toMatch(new RegExp(`\\s${data.length}\\s.*\\s${name}$`));
    const image = (await run('tar', ['-xOf', tarFile], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 })).stdout;
    expect(image.equals(data)).toBe(true);
    await rm(bundleFile);
    await rm(tarFile);
  });

  /** How many parts of `name` the bucket lists, once it lists at least `atLeast` or `ms` passed. */
  const partsInWalrus = async (name: string, atLeast: number, ms: number): Promise<number> => {
    const until = Date.now() + ms;
    for (;;) {
      const count = (await world!.keys(`b/${name}.part.`)).length;
      if (count >= atLeast || Date.now() > until) return count;
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  test('sends parts while the image is still being read, with at most `concurrency` part buffers', async () => {
    const size = 6 * 1024 * 1024;
    const name = `visor-streaming-${randomBytes(3).toString('hex')}`;
    const seen: number[] = [];
    let emitted = 0;
    let checked = false;
    const source = () =>
      new Readable({
        highWaterMark: 64 * 1024,
        read() {
          if (emitted >= size) return void this.push(null);
          if (!checked && emitted >= size / 2) {
            checked = true;
            // Half the image read, the rest held back: parts must reach Walrus meanwhile. Swift updates
            // its container listings asynchronously (later under load), so wait for them a while.
            void partsInWalrus(name, 8, 20_000).then((count) => {
              seen.push(count);
              emitted += 64 * 1024;
              this.push(randomBytes(64 * 1024));
            });
            return;
          }
          emitted += 64 * 1024;
          this.push(randomBytes(64 * 1024));
        },
      });
    const { result } = await bundleOf(source, { name, size, partSize: 256 * 1024, concurrency: 2 });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeGreaterThanOrEqual(8);
    expect(result.parts.length).toBeGreaterThanOrEqual(24);
    expect(result.peakBuffers).toBeLessThanOrEqual(2);
    expect(result.size).toBe(size);
  });

  test('a source that fails mid-way fails the bundle (no hang), one that runs long is refused early', async () => {
    let sent = 0;
    const failing = () =>
      new Readable({
        read() {
          sent += 64 * 1024;
          if (sent > 1024 * 1024) this.destroy(new Error('disk read error'));
          else this.push(randomBytes(64 * 1024));
        },
      });
    const error = await bundleOf(failing, { name: 'visor-failing', size: 4 * 1024 * 1024, concurrency: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVisorError(error, 'unavailable')).toBe(true);
    expect(String((error as Error).message)).toContain('disk read error');

    let given = 0;
    const endless = () =>
      new Readable({
        read() {
          given += 64 * 1024;
          this.push(randomBytes(64 * 1024));
        },
      });
    const tooLong = await bundleOf(endless, { name: 'visor-endless', size: 512 * 1024 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVisorError(tooLong, 'integrity')).toBe(true);
    expect(given).toBeLessThan(4 * 1024 * 1024);
  });
});
