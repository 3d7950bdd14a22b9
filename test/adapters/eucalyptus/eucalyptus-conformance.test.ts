import { afterAll } from 'vitest';
import { iaasConformance, type ConformanceHarness } from '../../../core/testing/iaas-conformance.js';
import { expectValidBodies, otherAccount, region, startWorld, type EucalyptusWorld } from './harness.js';

/**
 * The IaasDriver conformance suite against the EC2 double (an honest CLC that unbundles every
 * registered bundle with openssl and tar) and the real S3 peer as Walrus: once with tags and
 * SigV4, once as an old cloud without tags (markers in the Description) signing with SigV2.
 */

const started = await startWorld('euca-conformance');
const skip = 'skip' in started ? started.skip : undefined;
const world = 'skip' in started ? undefined : (started as EucalyptusWorld);

afterAll(async () => {
  if (!world) return;
  try {
    await expectValidBodies(world.doubles);
  } finally {
    await world.close();
  }
});

iaasConformance(
  'eucalyptus (tags, SigV4)',
  async (): Promise<ConformanceHarness> => {
    const double = await world!.double();
    return {
      driver: async () => world!.driver(double),
      badCredentialsDriver: async () =>
        world!.driver(double, {
          ec2: {
            endpoint: double.endpoint,
            region: 'eucalyptus',
            accessKeyId: 'AKIAVISORTEST0EUCA01',
            secretAccessKey: 'not-the-secret',
            maxAttempts: 1,
          },
        }),
      sharing: {
        // Account ids (launch permissions); a member added by hand goes straight into the double's record.
        principals: ['111122223333', '444455556666'],
        addByHand: async (id, account) => void double.image(id)!.launchUsers.add(account),
      },
      createUnmarked: async (name) => double.addImage({ name }).id,
      otherOwnerDriver: async () =>
        world!.driver(double, {
          ec2: {
            endpoint: double.endpoint,
            region,
            accessKeyId: otherAccount.accessKeyId,
            secretAccessKey: otherAccount.secretAccessKey,
            maxAttempts: 1,
          },
          accountId: otherAccount.accountId,
        }),
      notes: {
        paging:
          'Eucalyptus DescribeImages has no paging (no MaxResults/NextToken in its binding or in ' +
          'the 2010-08-31 schema); NextToken following is tested in eucalyptus-client.test.ts',
      },
    };
  },
  skip,
);

iaasConformance(
  'eucalyptus (no tags: markers in the Description, SigV2)',
  async (): Promise<ConformanceHarness> => {
    const double = await world!.double({ tags: false });
    const ec2 = {
      endpoint: double.endpoint,
      region: 'eucalyptus',
      accessKeyId: 'AKIAVISORTEST0EUCA01',
      signatureVersion: 'v2' as const,
      maxAttempts: 1,
    };
    return {
      driver: async () => {
        const driver = world!.driver(double, {
          ec2: { ...ec2, secretAccessKey: 'visor/eucalyptus+secret=TEST' },
          tagsSupported: false,
        });
        return driver;
      },
      badCredentialsDriver: async () =>
        world!.driver(double, { ec2: { ...ec2, secretAccessKey: 'not-the-secret' }, tagsSupported: false }),
      sharing: {
        // Account ids (launch permissions); a member added by hand goes straight into the double's record.
        principals: ['111122223333', '444455556666'],
        addByHand: async (id, account) => void double.image(id)!.launchUsers.add(account),
      },
      createUnmarked: async (name) => double.addImage({ name }).id,
      notes: { paging: 'Eucalyptus DescribeImages has no paging' },
    };
  },
  skip,
);
