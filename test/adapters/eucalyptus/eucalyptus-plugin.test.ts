import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eucalyptusOptionsSchema, eucalyptusPlugin } from '../../../adapters/eucalyptus/index.js';
import { builtinPlugins } from '../../../agent/builtins.js';
import { isVisorError } from '../../../core/errors.js';
import type { IaasDriverFactory, PluginContext } from '../../../core/registry/ids.js';
import { ServiceIds } from '../../../core/registry/ids.js';
import { silentLogger } from '../../../core/logging/logger.js';
import { Container } from 'inversify';
import { makeCertificates, type Certificates } from './harness.js';

/** The plugin facade: options (defaults, every problem named), PEM loading, secrets. */

const certs = await makeCertificates();
const skip = 'skip' in certs ? certs.skip : undefined;
const folder = await mkdtemp(join(tmpdir(), 'visor-euca-plugin-'));
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
  if (!skip) await rm((certs as Certificates).dir, { recursive: true, force: true });
});

const minimal = {
  accessKeyId: 'AK',
  secretAccessKey: 'SK',
  accountId: '123456789012',
  bucket: 'bundles',
  userCertificate: 'user.pem',
  userPrivateKey: 'user.key',
  cloudCertificate: 'cloud.pem',
};

describe('eucalyptus plugin', () => {
  it('is a built-in iaas plugin', () => {
    expect(builtinPlugins.filter((p) => p.id === 'eucalyptus').map((p) => p.kind)).toEqual(['iaas']);
  });

  it('fills the documented defaults', () => {
    const options = eucalyptusOptionsSchema.parse(minimal);
    expect(options).toMatchObject({
      region: 'eucalyptus',
      signatureVersion: 'v4',
      acl: 'aws-exec-read',
      partSize: 10 * 1024 * 1024,
      concurrency: 4,
      gzipLevel: 6,
      tagsSupported: 'auto',
      maxTags: 50,
      keepPartsForRetry: true,
      prefix: '',
      createBucket: true,
    });
  });

  it('names every bad option at once', () => {
    const result = eucalyptusOptionsSchema.safeParse({
      ...minimal,
      accountId: 'admin',
      ec2Endpoint: 'ftp://x',
      partSize: 10,
      signatureVersion: 'v3',
      kernelId: 'vmlinuz',
      extra: 1,
    });
    expect(result.success).toBe(false);
    const paths = result.error!.issues.map((i) => i.path.join('.') || 'root').sort();
    expect(paths).toEqual(['accountId', 'ec2Endpoint', 'kernelId', 'partSize', 'root', 'signatureVersion'].sort());
  });

  it(
    'reads PEM files relative to the data directory, ' +
      'registers the secrets, and refuses a key of another certificate',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const c = certs as Certificates;
      await writeFile(join(folder, 'user.pem'), c.userCertificate);
      await writeFile(join(folder, 'user.key'), c.userPrivateKey);
      await writeFile(join(folder, 'cloud.pem'), c.cloudCertificate);
      await writeFile(join(folder, 'other.key'), c.otherPrivateKey);
      const container = new Container();
      await container.load(eucalyptusPlugin.module);
      const factory = container.get<IaasDriverFactory>(ServiceIds.IaasDriverFactory, { name: 'eucalyptus' });
      const secrets: string[] = [];
      const context = {
        name: 'euca',
        dataDir: folder,
        logger: silentLogger,
        secrets: { add: (s: string | undefined) => s !== undefined && secrets.push(s) },
      } as unknown as PluginContext;
      const driver = await factory.create(
        eucalyptusOptionsSchema.parse({
          ...minimal,
          ec2Endpoint: 'http://127.0.0.1:9/services/compute',
          s3Endpoint: 'http://127.0.0.1:9/services/objectstorage',
        }),
        context,
      );
      expect(driver.adapter).toBe('eucalyptus');
      expect(secrets).toContain('SK');
      expect(secrets).toContain(c.userPrivateKey);
      await driver.close();
      await driver.close();

      const mismatched = await Promise.resolve(
        factory.create(eucalyptusOptionsSchema.parse({ ...minimal, userPrivateKey: 'other.key' }), context),
      ).catch((e: unknown) => e);
      expect(isVisorError(mismatched, 'config')).toBe(true);
      expect(String((mismatched as Error).message)).toContain('does not belong');
      const missing = await Promise.resolve(
        factory.create(eucalyptusOptionsSchema.parse({ ...minimal, cloudCertificate: 'nowhere.pem' }), context),
      ).catch((e: unknown) => e);
      expect(isVisorError(missing, 'config')).toBe(true);
      expect(String((missing as Error).message)).toContain('cloudCertificate');
    },
  );
});
