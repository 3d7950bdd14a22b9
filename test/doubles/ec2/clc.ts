import { spawn } from 'node:child_process';
import { createHash, createPublicKey, verify, X509Certificate } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { XMLParser } from 'fast-xml-parser';

/**
 * What a Eucalyptus CLC does with a bundle, done with independent tools: the manifest is read
 * from Walrus (the real S3 peer) and checked as ImageManifests.java reads it (XPaths of
 * apis.md §2.6), its signature verified with the user's certificate, the AES key and IV
 * decrypted with the cloud's private key by `openssl pkeyutl` (as euca2ools' openssl rsautl),
 * and the whole bundle unbundled as euca-unbundle does: parts (SHA1 each) -> `openssl enc -d
 * -aes-128-cbc` -> gunzip -> SHA1 of the tar stream -> `tar -xO`. Nothing here uses the
 * adapter's code.
 */

export class ManifestProblem extends Error {}

export interface CheckedManifest {
  xml: string;
  name: string;
  user: string;
  type: string;
  architecture?: string;
  kernelId?: string;
  ramdiskId?: string;
  digest: string;
  size: number;
  bundledSize: number;
  key: string;
  iv: string;
  parts: Array<{ filename: string; digest: string }>;
}

export interface BundleCheck {
  ok: boolean;
  reason?: string;
  /** Of the unbundled image, when it came out. */
  size?: number;
  sha256?: string;
  md5?: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  isArray: (_n, path) => path === 'manifest.image.parts.part',
});

async function getText(s3: S3Client, bucket: string, key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return (await out.Body!.transformToString('utf8')) ?? '';
}

function run(command: string, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(Buffer.concat(out))
        : reject(new Error(`${command} exited ${code}: ${Buffer.concat(err).toString().trim()}`)),
    );
    child.stdin.end(input);
  });
}

const text = (value: unknown): string | undefined =>
  typeof value === 'string'
    ? value
    : typeof value === 'object' && value !== null && '#text' in value
      ? String((value as { '#text': unknown })['#text'])
      : undefined;

/** Reads and checks a manifest; a ManifestProblem is what the CLC answers InvalidManifest for. */
export async function checkManifest(
  s3: S3Client,
  location: string,
  userCertificatePem: string,
  cloudKeyFile: string,
): Promise<CheckedManifest> {
  const slash = location.indexOf('/');
  if (slash <= 0) throw new ManifestProblem(`ImageLocation ${location} is not bucket/key`);
  let xml: string;
  try {
    xml = await getText(s3, location.slice(0, slash), location.slice(slash + 1));
  } catch (error) {
    throw new ManifestProblem(`Failed to read manifest file: ${location}: ${(error as Error).name}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml, true) as Record<string, unknown>;
  } catch (error) {
    throw new ManifestProblem(`Failed to parse manifest: ${(error as Error).message}`);
  }
  const m = doc['manifest'] as Record<string, Record<string, unknown>> | undefined;
  const image = m?.['image'];
  const mc = m?.['machine_configuration'];
  if (!m || !image || !mc) throw new ManifestProblem('Manifest lacks manifest/image or manifest/machine_configuration');
  if (text(m['version']) !== '2007-10-10') throw new ManifestProblem('Unsupported manifest version');
  const signature = text(m['signature']);
  if (!signature) throw new ManifestProblem('Manifest has no signature');
  const start = xml.indexOf('<machine_configuration>');
  const end = xml.lastIndexOf('</image>');
  if (start < 0 || end < 0) throw new ManifestProblem('Manifest signature cannot be checked');
  const signed = xml.slice(start, end + '</image>'.length);
  const publicKey = createPublicKey(
    new X509Certificate(userCertificatePem).publicKey.export({ type: 'spki', format: 'pem' }),
  );
  if (!verify('sha1', Buffer.from(signed, 'utf8'), publicKey, Buffer.from(signature, 'hex')))
    throw new ManifestProblem('Invalid Manifest: signature does not verify with the user certificate');
  const decrypt = async (field: string) => {
    const hex = text(image[field]);
    if (!hex) throw new ManifestProblem(`Manifest has no ${field}`);
    try {
      const plain = (
        await run(
          'openssl',
          ['pkeyutl', '-decrypt', '-inkey', cloudKeyFile, '-pkeyopt', 'rsa_padding_mode:pkcs1'],
          Buffer.from(hex, 'hex'),
        )
      ).toString('ascii');
      if (!/^[0-9a-f]{32}$/i.test(plain)) throw new Error('not a hex AES-128 value');
      return plain;
    } catch (error) {
      throw new ManifestProblem(`Failed to decrypt ${field} with the cloud key: ${(error as Error).message}`);
    }
  };
  const partsNode = image['parts'] as { part?: Array<Record<string, unknown>>; '@_count'?: string } | undefined;
  const parts = (partsNode?.part ?? [])
    .map((p) => ({ index: Number(p['@_index']), filename: text(p['filename']) ?? '', digest: text(p['digest']) ?? '' }))
    .sort((a, b) => a.index - b.index);
  if (
    parts.length === 0 ||
    parts.length !== Number(partsNode?.['@_count']) ||
    parts.some((p, i) => p.index !== i || !p.filename || !/^[0-9a-f]{40}$/.test(p.digest))
  ) {
    throw new ManifestProblem('Manifest parts are not 0..count-1 with a filename and a SHA1 digest each');
  }
  const size = Number(text(image['size']));
  const bundledSize = Number(text(image['bundled_size']));
  const digest = text(image['digest']) ?? '';
  const type = text(image['type']) ?? '';
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(bundledSize) || !/^[0-9a-f]{40}$/.test(digest))
    throw new ManifestProblem('Manifest size, bundled_size or digest is malformed');
  if (!['machine', 'kernel', 'ramdisk'].includes(type))
    throw new ManifestProblem(`Manifest image type ${type} is unknown`);
  return {
    xml,
    name: text(image['name']) ?? '',
    user: text(image['user']) ?? '',
    type,
    ...(text(mc['architecture']) ? { architecture: text(mc['architecture'])! } : {}),
    ...(text(mc['kernel_id']) ? { kernelId: text(mc['kernel_id'])! } : {}),
    ...(text(mc['ramdisk_id']) ? { ramdiskId: text(mc['ramdisk_id'])! } : {}),
    digest,
    size,
    bundledSize,
    key: await decrypt('ec2_encrypted_key'),
    iv: await decrypt('ec2_encrypted_iv'),
    parts: parts.map(({ filename, digest: d }) => ({ filename, digest: d })),
  };
}

/** Unbundles the whole image through openssl, gunzip and tar, checking every digest. */
export async function unbundle(s3: S3Client, location: string, manifest: CheckedManifest): Promise<BundleCheck> {
  const bucket = location.slice(0, location.indexOf('/'));
  const folder = location.slice(bucket.length + 1, location.lastIndexOf('/') + 1);
  const openssl = spawn('openssl', ['enc', '-d', '-aes-128-cbc', '-K', manifest.key, '-iv', manifest.iv], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const tar = spawn('tar', ['-xOf', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  openssl.stderr.on('data', (d: Buffer) => stderr.push(`openssl: ${d.toString().trim()}`));
  tar.stderr.on('data', (d: Buffer) => stderr.push(`tar: ${d.toString().trim()}`));
  // tar may stop reading early (a bad tar stream): the write then fails with EPIPE, which must be a
  // failed check, not an unhandled error that takes the test process down. Its exit code reports it.
  tar.stdin.on('error', (error) => stderr.push(`tar stdin: ${error.message}`));
  openssl.stdin.on('error', (error) => stderr.push(`openssl stdin: ${error.message}`));
  const exited = (child: ReturnType<typeof spawn>, name: string) =>
    new Promise<void>((resolve, reject) =>
      child.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`${name} exited ${code}: ${stderr.join(' | ')}`)),
      ),
    );
  let bundled = 0;
  let problem: string | undefined;
  async function* parts(): AsyncGenerator<Buffer> {
    for (const part of manifest.parts) {
      const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: folder + part.filename }));
      const sha1 = createHash('sha1');
      for await (const chunk of out.Body as Readable) {
        sha1.update(chunk as Buffer);
        bundled += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      const got = sha1.digest('hex');
      if (got !== part.digest) {
        problem = `part ${part.filename} has SHA1 ${got}, the manifest says ${part.digest}`;
        throw new Error(problem);
      }
    }
  }
  const tarSha1 = createHash('sha1');
  const imageSha256 = createHash('sha256');
  const imageMd5 = createHash('md5');
  let imageBytes = 0;
  try {
    await Promise.all([
      pipeline(Readable.from(parts()), openssl.stdin),
      pipeline(
        openssl.stdout,
        createGunzip(),
        new Writable({
          write(chunk: Buffer, _e, callback) {
            tarSha1.update(chunk);
            if (tar.stdin.write(chunk)) callback();
            else tar.stdin.once('drain', () => callback());
          },
          final(callback) {
            tar.stdin.end(callback);
          },
        }),
      ),
      pipeline(
        tar.stdout,
        new Writable({
          write(chunk: Buffer, _e, callback) {
            imageBytes += chunk.length;
            imageSha256.update(chunk);
            imageMd5.update(chunk);
            callback();
          },
        }),
      ),
      exited(openssl, 'openssl'),
      exited(tar, 'tar'),
    ]);
  } catch (error) {
    openssl.kill();
    tar.kill();
    return { ok: false, reason: problem ?? `unbundling failed: ${(error as Error).message}` };
  }
  const digest = tarSha1.digest('hex');
  if (bundled !== manifest.bundledSize)
    return { ok: false, reason: `the parts hold ${bundled} bytes, bundled_size says ${manifest.bundledSize}` };
  if (digest !== manifest.digest)
    return { ok: false, reason: `the tar stream has SHA1 ${digest}, the manifest says ${manifest.digest}` };
  if (imageBytes !== manifest.size)
    return { ok: false, reason: `the image is ${imageBytes} bytes, the manifest says ${manifest.size}` };
  return { ok: true, size: imageBytes, sha256: imageSha256.digest('hex'), md5: imageMd5.digest('hex') };
}
