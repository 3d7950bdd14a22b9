import { randomUUID } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { NimbusDriver, type NimbusDriverOptions } from '../../../adapters/nimbus/driver.js';
import { nimbusOptionsSchema, nimbusPlugin } from '../../../adapters/nimbus/index.js';
import type { IaasDriver } from '../../../core/iaas/port.js';
import { silentLogger } from '../../../core/logging/logger.js';
import { SecretRegistry } from '../../../core/logging/redact.js';
import type { PluginFactory } from '../../../core/registry/ids.js';
import { PluginRegistry } from '../../../core/registry/registry.js';
import {
  createTestBucket,
  deleteTestBucket,
  listKeys,
  peerClient,
  pendingUploads,
  type S3Peer,
} from '../../peers/s3.js';

/**
 * A Cumulus repository on the real S3 peer (Swift s3api): one bucket laid out as Nimbus lays
 * out `Repo` — `VMS/<canonical-id>/<name>` for the user, `VMS/common/<name>` for the site —
 * plus what a real repository also holds and the adapter must leave alone: another user's
 * image, a key nested too deep for Nimbus, and a description object beside the VMS prefix.
 *
 * Reusable from other tests (the agent's end-to-end sync): `options` is exactly what goes under
 * `clouds.<name>.options` in visor.yaml for this repository.
 */
export interface CumulusRepository {
  peer: S3Peer;
  bucket: string;
  canonicalId: string;
  /** Plugin options (visor.yaml `clouds.<name>.options`) for this repository. */
  options: Record<string, unknown>;
  /** A client of the peer, for looking behind the driver's back. */
  client: S3Client;
  /** Keys the layout was seeded with (never listed, never touched by the driver). */
  seeded: string[];
  /** Puts an object without visor's metadata (an image someone uploaded with cloud-client). */
  putUnmarked(folder: 'own' | 'common', name: string, body?: Buffer | string): Promise<string>;
  keys(): Promise<string[]>;
  pendingUploads(): Promise<Array<{ key: string; uploadId: string }>>;
  /** Removes the bucket and everything in it. */
  cleanup(): Promise<void>;
}

export async function setUpCumulusRepository(
  peer: S3Peer,
  label: string,
  overrides: Record<string, unknown> = {},
): Promise<CumulusRepository> {
  const bucket = await createTestBucket(peer, `nimbus-${label}`);
  const canonicalId = randomUUID();
  const client = peerClient(peer);
  const put = (key: string, body: Buffer | string = 'not an image of this user') =>
    client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const seeded = [
    `VMS/${randomUUID()}/another-users-image`,
    `VMS/${canonicalId}/nested/too-deep`,
    `VMS.description/${canonicalId}/described-image`,
  ];
  for (const key of seeded) await put(key);
  const options: Record<string, unknown> = {
    endpoint: peer.endpoint,
    region: peer.region,
    accessKeyId: peer.accessKeyId,
    secretAccessKey: peer.secretAccessKey,
    canonicalId,
    bucket,
    prefix: 'VMS',
    partSize: 5 * 1024 * 1024,
    ...overrides,
  };
  return {
    peer,
    bucket,
    canonicalId,
    options,
    client,
    seeded,
    putUnmarked: async (folder, name, body = 'an image uploaded by cloud-client') => {
      const key = `VMS/${folder === 'common' ? 'common' : canonicalId}/${name}`;
      await put(key, body);
      return key;
    },
    keys: () => listKeys(client, bucket),
    pendingUploads: () => pendingUploads(client, bucket),
    cleanup: async () => {
      client.destroy();
      await deleteTestBucket(peer, bucket);
    },
  };
}

/**
 * A driver made the way visor makes it: the plugin registered, its options validated by its
 * own schema, then its factory. `secrets` receives what the plugin registers as secret.
 */
export async function pluginDriver(
  options: Record<string, unknown>,
  secrets = new SecretRegistry(),
): Promise<IaasDriver> {
  const registry = new PluginRegistry();
  registry.register(nimbusPlugin);
  const { value, issues } = await registry.validateOptions('iaas', 'nimbus', options, ['clouds', 'nimbus', 'options']);
  if (issues.length > 0)
    throw new Error(`invalid nimbus options: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
  const factory = registry.factory('iaas', 'nimbus') as PluginFactory<IaasDriver>;
  return factory.create(value, { name: 'nimbus-test', dataDir: '/tmp', logger: silentLogger, secrets });
}

/** A driver built directly, for the knobs the plugin does not expose (HEAD concurrency, copy threshold). */
export function directDriver(repo: CumulusRepository, overrides: Partial<NimbusDriverOptions> = {}): NimbusDriver {
  const o = nimbusOptionsSchema.parse(repo.options);
  return new NimbusDriver({
    endpoint: o.endpoint,
    region: o.region,
    accessKeyId: o.accessKeyId,
    secretAccessKey: o.secretAccessKey,
    canonicalId: o.canonicalId,
    bucket: o.bucket,
    prefix: o.prefix,
    commonFolder: o.commonFolder,
    compress: o.compress,
    partSize: o.partSize,
    concurrency: o.concurrency,
    pageSize: o.pageSize,
    requestTimeoutMs: 30_000,
    logger: silentLogger,
    ...overrides,
  });
}
