import { randomBytes } from 'node:crypto';
import { afterAll } from 'vitest';
import { expectValidDocuments } from '../adapters/opennebula/harness.js';
import {
  accountId,
  expectValidBodies,
  otherAccount,
  region,
  startWorld,
  type EucalyptusWorld,
} from '../adapters/eucalyptus/harness.js';
import type { Ec2Double } from '../doubles/ec2/index.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../doubles/opennebula/index.js';
import { sharedCloudScenario, type NativeRecord, type TargetName } from '../support/shared-cloud.js';

/**
 * The shared-cloud scenario (test/support/shared-cloud.ts) where no real cloud can run: the
 * OpenNebula double (alpha and beta as oneadmin, gamma as another user) and the EC2 double with
 * Walrus on the real S3 peer (alpha and beta in one account, gamma in another). Every reply the
 * doubles sent is validated against the official schemas at the end.
 */

const oneDoubles: OpenNebulaDouble[] = [];
const ec2Doubles: Ec2Double[] = [];
afterAll(async () => {
  if (oneDoubles.length > 0) await expectValidDocuments(oneDoubles);
  if (ec2Doubles.length > 0) await expectValidBodies(ec2Doubles);
});

/** Maps and sets as plain JSON, so that snapshots compare whole. */
const plain = (value: unknown): NativeRecord =>
  JSON.parse(
    JSON.stringify(value, (_k, v: unknown) =>
      v instanceof Map ? Object.fromEntries(v) : v instanceof Set ? [...v].sort() : v,
    ),
  ) as NativeRecord;

sharedCloudScenario('OpenNebula (double)', async () => {
  const one = await startOpenNebulaDouble({ generation: 7 });
  oneDoubles.push(one);
  const prefix = `shared-${randomBytes(3).toString('hex')}-`;
  const template = (record: NativeRecord) => record['template'] as Record<string, string>;
  return {
    cloud: (t: TargetName) => ({
      adapter: 'opennebula',
      options: {
        endpoint: one.endpoint,
        username: t === 'gamma' ? 'user' : 'oneadmin',
        password: 'opennebula',
        datastore: 'default',
        pollInterval: 0.05,
        timeouts: { request: 10 },
      },
    }),
    // oned keeps names unique per user: two targets of one user need two name templates.
    naming: (t: TargetName) => `${prefix}${t}-{name}`,
    softRetire: 'disable',
    snapshot: async () =>
      new Map(
        one
          .images()
          .filter((i) => i.name.includes(prefix))
          .map((i) => [String(i.id), plain(i)]),
      ),
    markers: (record) => ({
      agent: template(record)['VISOR_AGENT'],
      target: template(record)['VISOR_TARGET'],
      imageId: template(record)['VISOR_IMAGE_ID'],
    }),
    retired: (record) => record['state'] === 3 && String(record['name']).startsWith('EXPIRED_'),
    close: async () => undefined,
  };
});

sharedCloudScenario('EC2 (Eucalyptus double, Walrus on the real S3 peer)', async () => {
  const started = await startWorld('shared-euca');
  if ('skip' in started) return started;
  const world: EucalyptusWorld = started;
  // alpha and beta: the S3 peer's keys for both services, as on a real Eucalyptus. gamma: another
  // account, whose EC2 keys the S3 peer does not know, so its driver is built by hand below.
  const double = await world.double({
    credentials: {
      [world.peer.accessKeyId]: world.peer.secretAccessKey,
      [otherAccount.accessKeyId]: otherAccount.secretAccessKey,
    },
    accounts: { [otherAccount.accessKeyId]: otherAccount.accountId },
  });
  ec2Doubles.push(double);
  const prefix = `shared-${randomBytes(3).toString('hex')}-`;
  const tags = (record: NativeRecord) => record['tags'] as Record<string, string>;
  return {
    cloud: () => ({
      adapter: 'eucalyptus',
      options: {
        ec2Endpoint: double.endpoint,
        s3Endpoint: world.peer.endpoint,
        region,
        s3Region: world.peer.region,
        accessKeyId: world.peer.accessKeyId,
        secretAccessKey: world.peer.secretAccessKey,
        accountId,
        bucket: world.bucket,
        prefix: 'bundles/',
        acl: 'none',
        createBucket: false,
        userCertificate: world.certs.userCertificate,
        userPrivateKey: world.certs.userPrivateKey,
        cloudCertificate: world.certs.cloudCertificate,
        partSize: 256 * 1024,
        gzipLevel: 1,
        pollInterval: 0.05,
        maxAttempts: 1,
      },
    }),
    // The same names for alpha and beta: EC2 names are unique per account, so the adapter must keep them apart.
    naming: () => `${prefix}{name}`,
    softRetire: 'hide',
    driver: (t: TargetName) =>
      t === 'gamma'
        ? world.driver(double, {
            ec2: {
              endpoint: double.endpoint,
              region,
              accessKeyId: otherAccount.accessKeyId,
              secretAccessKey: otherAccount.secretAccessKey,
              maxAttempts: 1,
            },
            accountId: otherAccount.accountId,
            pollIntervalMs: 50,
          })
        : undefined,
    snapshot: async () =>
      new Map(
        double
          .images()
          .filter((i) => i.state !== 'deregistered' && (i.tags.get('Name') ?? '').startsWith(prefix))
          .map((i) => [i.id, plain(i)]),
      ),
    markers: (record) => ({
      agent: tags(record)['visor:agent'],
      target: tags(record)['visor:target'],
      imageId: tags(record)['visor:image-id'],
    }),
    retired: (record) => tags(record)['visor:hidden'] !== undefined && record['isPublic'] === false,
    close: () => world.close(),
  };
});
