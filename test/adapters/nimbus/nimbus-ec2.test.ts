import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { offeredImage, reconcile } from '../../../adapters/nimbus/client-frontend.js';
import { isVisorError } from '../../../core/errors.js';
import type { CloudImage, IaasDriver } from '../../../core/iaas/port.js';
import type { Logger } from '../../../core/logging/logger.js';
import { bufferContent } from '../../support/content.js';
import { makeImage } from '../../support/images.js';
import { startEc2Double, type Ec2Double } from '../../doubles/ec2/index.js';
import { validateEc2Bodies } from '../../doubles/ec2/xsd.js';
import { requirePeer } from '../../peers/index.js';
import type { S3Peer } from '../../peers/s3.js';
import { directDriver, pluginDriver, setUpCumulusRepository, type CumulusRepository } from './harness.js';

/**
 * The Nimbus adapter with the EC2 Query frontend configured: list and get also ask
 * DescribeImages which repository images Nimbus offers. The frontend is the project's EC2
 * double (test/doubles/ec2: SigV2/SigV4 checked, every body valid against the 2010-08-31 WSDL
 * types), seeded the way Nimbus's ServiceImageImpl.convertFileListings answers from the
 * repository (apis.md §4.4): one item per object of VMS/<owner>/ and VMS/common/, imageId =
 * the object name, imageLocation = cumulus://<host>/<bucket>/VMS/<owner|common>/, isPublic for
 * common ones, available, i386, default-kernel / default-ramdisk.
 */

const { peer: started, skip: skipReason } = await requirePeer('s3');

const test = (title: string, fn: () => Promise<void>) =>
  it(title, async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    await fn();
  }, 60_000);

interface Captured {
  level: string;
  message: string;
  meta?: Record<string, unknown>;
}
function capturingLogger(lines: Captured[]): Logger {
  const log = (level: string) => (message: string, meta?: Record<string, unknown>) =>
    void lines.push({ level, message, ...(meta ? { meta } : {}) });
  const logger: Logger = {
    error: log('error'),
    warn: log('warn'),
    info: log('info'),
    debug: log('debug'),
    child: () => logger,
  };
  return logger;
}

describe('nimbus with the EC2 Query frontend', () => {
  let repo: CumulusRepository;
  const doubles: Ec2Double[] = [];
  const drivers: IaasDriver[] = [];

  /** A frontend offering what the repository holds, as Nimbus would; minus `hide`, plus `extra` names. */
  async function nimbusFrontend(
    options: { hide?: string[]; extra?: Array<{ name: string; location?: string; isPublic?: boolean }> } = {},
  ): Promise<Ec2Double> {
    const double = await startEc2Double({
      accountId: repo.canonicalId,
      credentials: { [repo.peer.accessKeyId]: repo.peer.secretAccessKey },
      s3: repo.client,
      // Only RegisterImage reads these; Nimbus has none.
      userCertificatePem: '',
      cloudKeyFile: '',
      // Nimbus serves the Query API at the root of port 8444 (query-frontend-main.xml: address="/").
      servicePath: '',
    });
    doubles.push(double);
    const seed = (name: string, location: string, isPublic: boolean) =>
      double.addImage({
        id: name,
        name,
        location,
        ownerId: repo.canonicalId,
        isPublic,
        state: 'available',
        architecture: 'i386',
        type: 'machine',
        kernelId: 'default-kernel',
        ramdiskId: 'default-ramdisk',
      });
    for (const key of await repo.keys()) {
      const parts = key.split('/');
      if (parts.length !== 3 || parts[0] !== 'VMS' || (parts[1] !== repo.canonicalId && parts[1] !== 'common'))
        continue;
      if (options.hide?.includes(key)) continue;
      seed(parts[2]!, `cumulus://127.0.0.1:8888/${repo.bucket}/VMS/${parts[1]}/`, parts[1] === 'common');
    }
    for (const e of options.extra ?? [])
      seed(
        e.name,
        e.location ?? `cumulus://127.0.0.1:8888/${repo.bucket}/VMS/${repo.canonicalId}/`,
        e.isPublic ?? false,
      );
    return double;
  }

  const driverWith = (double: Ec2Double, logger?: Logger) => {
    const driver = directDriver(repo, {
      frontend: {
        endpoint: double.endpoint,
        signatureVersion: 'v2',
        signatureMethod: 'HmacSHA256',
        apiVersion: '2009-08-15',
        region: 'nimbus',
        accessKeyId: repo.peer.accessKeyId,
        secretAccessKey: repo.peer.secretAccessKey,
        requestTimeoutMs: 10_000,
      },
      ...(logger ? { logger } : {}),
    });
    drivers.push(driver);
    return driver;
  };

  const create = async (driver: IaasDriver, access: 'public' | 'private'): Promise<CloudImage> => {
    const content = bufferContent(randomBytes(2048));
    const image = makeImage({
      name: `ec2-${randomBytes(3).toString('hex')}`,
      access,
      diskFormat: 'raw',
      containerFormat: 'bare',
    });
    return driver.create({
      image,
      markers: { agent: 'ec2-test', imageId: image.id, sha256: content.checksums.sha256, revision: 1 },
      content,
      timeoutMs: 120_000,
    });
  };

  beforeAll(async () => {
    if (skipReason) return;
    repo = await setUpCumulusRepository(started as S3Peer, 'ec2');
  });
  afterAll(async () => {
    for (const d of drivers) await d.close();
    try {
      // Every body the frontend sent is valid against the EC2 WSDL types (or the Query error envelope).
      const report = await validateEc2Bodies(doubles.flatMap((d) => d.responses.map((r) => r.body)));
      expect(report.errors).toEqual([]);
      if (doubles.length > 0) expect(report.checked).toBeGreaterThan(0);
    } finally {
      for (const d of doubles) await d.close();
      await repo?.cleanup();
    }
  });

  test(
    'lists repository images as active when Nimbus offers them, ' + 'asking with SigV2 and Version 2009-08-15',
    async () => {
      const plain = directDriver(repo);
      drivers.push(plain);
      const mine = await create(plain, 'private');
      const common = await create(plain, 'public');
      const unmarked = await repo.putUnmarked('own', `cloud-client-${randomBytes(3).toString('hex')}`);
      const double = await nimbusFrontend();
      const driver = driverWith(double);
      const listed = await driver.list();
      for (const id of [mine.nativeId, common.nativeId, unmarked])
        expect(listed.find((i) => i.nativeId === id)?.state, id).toBe('active');
      expect(listed.find((i) => i.nativeId === mine.nativeId)?.markers).toEqual(mine.markers);
      expect(listed.find((i) => i.nativeId === common.nativeId)?.access).toBe('public');
      expect((await driver.get(mine.nativeId)).state).toBe('active');
      expect(double.calls.length).toBeGreaterThanOrEqual(2);
      for (const call of double.calls) {
        expect(call.action).toBe('DescribeImages');
        expect(call.signature).toBe('v2');
        expect(call.params['Version']).toBe('2009-08-15');
        // No ImageId: Nimbus honours only the first one given.
        expect(Object.keys(call.params).some((k) => k.startsWith('ImageId'))).toBe(false);
      }
    },
  );

  test(
    'reports a repository image Nimbus does not offer as disabled, ' + 'and logs what only the frontend shows',
    async () => {
      const plain = directDriver(repo);
      drivers.push(plain);
      const hidden = await create(plain, 'private');
      const double = await nimbusFrontend({
        hide: [hidden.nativeId],
        extra: [
          { name: 'only-in-nimbus' },
          {
            name: 'someone-elses',
            location: `cumulus://127.0.0.1:8888/${repo.bucket}/VMS/21161ebe-862a-11df-a9ca-001de0a80259/`,
          },
        ],
      });
      const lines: Captured[] = [];
      const driver = driverWith(double, capturingLogger(lines));
      const listed = await driver.list();
      expect(listed.find((i) => i.nativeId === hidden.nativeId)).toMatchObject({
        state: 'disabled',
        markers: hidden.markers,
      });
      expect(listed.some((i) => i.name === 'only-in-nimbus' || i.name === 'someone-elses')).toBe(false);
      expect(listed.filter((i) => i.nativeId !== hidden.nativeId).every((i) => i.state === 'active')).toBe(true);
      expect((await driver.get(hidden.nativeId)).state).toBe('disabled');
      const warnings = lines.filter((l) => l.level === 'warn').map((l) => `${l.message} ${JSON.stringify(l.meta)}`);
      expect(
        warnings.some((w) => /does not offer these repository images/.test(w) && w.includes(hidden.nativeId)),
      ).toBe(true);
      expect(
        warnings.some(
          (w) => /offers images the repository listing does not show/.test(w) && w.includes('only-in-nimbus'),
        ),
      ).toBe(true);
      expect(
        warnings.some(
          (w) => /another repository, bucket, prefix or canonical id/.test(w) && w.includes('someone-elses'),
        ),
      ).toBe(true);
    },
  );

  test(
    'is wired by the plugin options: ec2.endpoint alone means SigV2, ' +
      'HmacSHA256, 2009-08-15; a bad caBundle is a config error',
    async () => {
      const double = await nimbusFrontend();
      const driver = await pluginDriver({ ...repo.options, ec2: { endpoint: double.endpoint } });
      drivers.push(driver);
      await driver.list();
      const call = double.calls.at(-1)!;
      expect(call).toMatchObject({
        action: 'DescribeImages',
        signature: 'v2',
        params: { Version: '2009-08-15', SignatureMethod: 'HmacSHA256' },
      });
      const error = await pluginDriver({
        ...repo.options,
        ec2: { endpoint: double.endpoint, caBundle: '/nonexistent/ca.pem' },
      }).catch((e: unknown) => e);
      expect(isVisorError(error, 'config')).toBe(true);
      expect((error as Error).message).toMatch(/cannot read ec2.caBundle \/nonexistent\/ca.pem/);
    },
  );

  test("fails list and get with the frontend's error, by kind", async () => {
    const double = await nimbusFrontend();
    const driver = driverWith(double);
    double.failNext('DescribeImages', 'AuthFailure', 401, 1);
    const auth = await driver.list().catch((e: unknown) => e);
    expect(isVisorError(auth, 'auth')).toBe(true);
    double.failNext('DescribeImages', 'Unavailable', 503, 5);
    const down = await driver.list().catch((e: unknown) => e);
    expect(isVisorError(down, 'unavailable')).toBe(true);
    expect((down as Error).message).toMatch(/ec2: DescribeImages/);
  });
});

describe('nimbus frontend reconciliation (pure)', () => {
  const layout = { prefix: 'VMS/', canonicalId: 'u1', commonFolder: 'common' };
  const item = (id: string, location: string | undefined, isPublic = false) =>
    ({ id, location, isPublic, state: 'available', ownerId: 'u1', tags: {} }) as unknown as Parameters<
      typeof offeredImage
    >[2];

  it('places each DescribeImages item by its imageLocation, or by isPublic when it has none', () => {
    expect(offeredImage(layout, 'Repo', item('a', 'cumulus://nimbus:8888/Repo/VMS/u1/'))).toMatchObject({
      key: 'VMS/u1/a',
    });
    expect(offeredImage(layout, 'Repo', item('b', 'cumulus://nimbus/Repo/VMS/common/', true))).toMatchObject({
      key: 'VMS/common/b',
    });
    expect(offeredImage(layout, 'Repo', item('c', undefined, true))).toMatchObject({ key: 'VMS/common/c' });
    expect(offeredImage(layout, 'Repo', item('d', 'cumulus://nimbus/Repo/VMS/u2/'))).toMatchObject({
      elsewhere: 'cumulus://nimbus/Repo/VMS/u2/',
    });
    expect(offeredImage(layout, 'Repo', item('e', 'cumulus://nimbus/Other/VMS/u1/'))).toMatchObject({
      elsewhere: 'cumulus://nimbus/Other/VMS/u1/',
    });
  });

  it('keeps what both show, disables what Nimbus does not offer, reports the rest', () => {
    const image = (nativeId: string): CloudImage => ({
      nativeId,
      name: nativeId,
      state: 'active',
      hidden: false,
      inUse: false,
      access: 'private',
      checksums: {},
      metadata: {},
    });
    const result = reconcile(
      [image('VMS/u1/a'), image('VMS/u1/b')],
      [
        offeredImage(layout, 'Repo', item('a', 'cumulus://h/Repo/VMS/u1/')),
        offeredImage(layout, 'Repo', item('z', 'cumulus://h/Repo/VMS/u1/')),
      ],
    );
    expect(result.images.map((i) => [i.nativeId, i.state])).toEqual([
      ['VMS/u1/a', 'active'],
      ['VMS/u1/b', 'disabled'],
    ]);
    expect(result.notOffered).toEqual(['VMS/u1/b']);
    expect(result.onlyOffered).toEqual(['VMS/u1/z']);
  });
});
