import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { S3Client } from '@aws-sdk/client-s3';
import { expect } from 'vitest';
import { loadBundleIdentity, type BundleIdentity } from '../../../adapters/eucalyptus/driver-bundle-crypto.js';
import { EucalyptusDriver, type EucalyptusDriverOptions } from '../../../adapters/eucalyptus/driver.js';
import { startEc2Double, type Ec2Double, type Ec2DoubleOptions } from '../../doubles/ec2/index.js';
import { validateEc2Bodies } from '../../doubles/ec2/xsd.js';
import { requirePeer } from '../../peers/index.js';
import { createTestBucket, deleteTestBucket, listKeys, peerClient, type S3Peer } from '../../peers/s3.js';

/**
 * Shared set-up of the Eucalyptus adapter tests: the real S3 peer (Swift s3api) as Walrus, a
 * fresh bucket per test file, the schema-checked EC2 double as the CLC, and the X.509 material
 * of a Eucalyptus user and cloud made with openssl (euca2ools shells out to it as well).
 */

const run = promisify(execFile);
export const accountId = '123456789012';
export const accessKeyId = 'AKIAVISORTEST0EUCA01';
export const secretAccessKey = 'visor/eucalyptus+secret=TEST';
export const region = 'eucalyptus';
/** A second account of the same cloud (its own images; same user certificate, for simplicity). */
export const otherAccount = {
  accountId: '210987654321',
  accessKeyId: 'AKIAVISORTEST0EUCA02',
  secretAccessKey: 'visor/eucalyptus+secret=OTHER',
};

export interface Certificates {
  dir: string;
  userCertificate: string;
  userPrivateKey: string;
  cloudCertificate: string;
  cloudKeyFile: string;
  identity: BundleIdentity;
  /** A second user's material: a bundle signed with it must be refused. */
  otherCertificate: string;
  otherPrivateKey: string;
}

type KeyPair = { cert: string; key: string; keyFile: string };

async function keyPair(openssl: string, dir: string, name: string, subject: string): Promise<KeyPair> {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.pem`);
  const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2'];
  await run(openssl, [...args, '-subj', subject], { timeout: 60_000 });
  return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), keyFile };
}

export async function makeCertificates(): Promise<Certificates | { skip: string }> {
  // tar and gzip, which the EC2 double also runs, are Essential in Debian: always there.
  const openssl = await requirePeer('openssl');
  if (!openssl.peer) return { skip: openssl.skip };
  const bin = openssl.peer.bin;
  const dir = await mkdtemp(join(tmpdir(), 'visor-euca-certs-'));
  const [user, cloud, other] = await Promise.all([
    keyPair(bin, dir, 'user', `/O=Eucalyptus/OU=visor tests/CN=${accountId}-admin`),
    keyPair(bin, dir, 'cloud', '/O=Eucalyptus/OU=visor tests/CN=cloud'),
    keyPair(bin, dir, 'other', '/O=Eucalyptus/OU=visor tests/CN=someone-else'),
  ]);
  return {
    dir,
    userCertificate: user.cert,
    userPrivateKey: user.key,
    cloudCertificate: cloud.cert,
    cloudKeyFile: cloud.keyFile,
    identity: loadBundleIdentity({
      userCertificate: user.cert,
      userPrivateKey: user.key,
      cloudCertificate: cloud.cert,
    }),
    otherCertificate: other.cert,
    otherPrivateKey: other.key,
  };
}

export interface EucalyptusWorld {
  peer: S3Peer;
  bucket: string;
  s3: S3Client;
  certs: Certificates;
  doubles: Ec2Double[];
  double(options?: Partial<Ec2DoubleOptions>): Promise<Ec2Double>;
  driver(double: Ec2Double, overrides?: Partial<EucalyptusDriverOptions>): EucalyptusDriver;
  /** Object keys in the test bucket (all, or under a prefix). */
  keys(prefix?: string): Promise<string[]>;
  close(): Promise<void>;
}

/** Peer, bucket, certificates; or why they cannot be had here. */
export async function startWorld(label: string): Promise<EucalyptusWorld | { skip: string }> {
  const certs = await makeCertificates();
  if ('skip' in certs) return certs;
  const { peer, skip } = await requirePeer('s3');
  if (!peer) return { skip };
  const bucket = await createTestBucket(peer, label);
  const s3 = peerClient(peer);
  const doubles: Ec2Double[] = [];
  const drivers: EucalyptusDriver[] = [];
  return {
    peer,
    bucket,
    s3,
    certs,
    doubles,
    async double(options = {}) {
      const double = await startEc2Double({
        accountId,
        credentials: { [accessKeyId]: secretAccessKey, [otherAccount.accessKeyId]: otherAccount.secretAccessKey },
        accounts: { [otherAccount.accessKeyId]: otherAccount.accountId },
        s3,
        userCertificatePem: certs.userCertificate,
        cloudKeyFile: certs.cloudKeyFile,
        region,
        pendingMs: 20,
        ...options,
      });
      doubles.push(double);
      return double;
    },
    driver(double, overrides = {}) {
      const driver = new EucalyptusDriver({
        ec2: {
          endpoint: double.endpoint,
          region,
          accessKeyId,
          secretAccessKey,
          signatureVersion: 'v4',
          requestTimeoutMs: 30_000,
          maxAttempts: 1,
        },
        s3: {
          endpoint: peer.endpoint,
          region: peer.region,
          forcePathStyle: true,
          accessKeyId: peer.accessKeyId,
          secretAccessKey: peer.secretAccessKey,
        },
        bucket,
        prefix: 'bundles/',
        // Swift's s3api refuses the aws-exec-read canned ACL that Walrus and AWS take.
        acl: 'none',
        createBucket: false,
        accountId,
        identity: certs.identity,
        partSize: 256 * 1024,
        concurrency: 3,
        gzipLevel: 1,
        keepPartsForRetry: true,
        tagsSupported: 'auto',
        maxTags: 50,
        pollIntervalMs: 25,
        ...overrides,
      });
      drivers.push(driver);
      return driver;
    },
    keys: async (prefix = '') => (await listKeys(s3, bucket)).filter((k) => k.startsWith(prefix)),
    async close() {
      for (const d of drivers) await d.close();
      for (const d of doubles) await d.close();
      s3.destroy();
      await deleteTestBucket(peer, bucket).catch(() => undefined);
      await rm(certs.dir, { recursive: true, force: true });
    },
  };
}

/** The check every test file ends with: each body any double sent validates against its schema. */
export async function expectValidBodies(doubles: readonly Ec2Double[]): Promise<number> {
  const bodies = doubles.flatMap((d) => d.responses.map((r) => r.body));
  expect(bodies.length, 'the doubles sent no response to check').toBeGreaterThan(0);
  const report = await validateEc2Bodies(bodies);
  expect(report.errors).toEqual([]);
  return report.checked;
}
