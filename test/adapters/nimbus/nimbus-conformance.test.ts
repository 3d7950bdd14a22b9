import { iaasConformance, type ConformanceHarness } from '../../../core/testing/iaas-conformance.js';
import { requirePeer } from '../../peers/index.js';
import type { S3Peer } from '../../peers/s3.js';
import { pluginDriver, setUpCumulusRepository } from './harness.js';

/**
 * The IaasDriver conformance suite against a Cumulus-laid-out bucket on the real S3 peer (Swift
 * s3api), once storing images as they are and once gzip-compressed.
 */

// Started while the file is collected, so that a peer that cannot run here skips the suites with its reason.
const { peer: started, skip } = await requirePeer('s3');

function harnessFor(label: string, overrides: Record<string, unknown>): () => Promise<ConformanceHarness> {
  return async () => {
    const repo = await setUpCumulusRepository(started as S3Peer, label, overrides);
    return {
      driver: () => pluginDriver(repo.options),
      pagedDriver: (pageSize) => pluginDriver({ ...repo.options, pageSize }),
      badCredentialsDriver: () => pluginDriver({ ...repo.options, secretAccessKey: 'not-the-secret' }),
      createUnmarked: (name) => repo.putUnmarked('own', name),
      // Another user of the repository: their own folder is not listed (the common folder is shared).
      otherOwnerDriver: () => pluginDriver({ ...repo.options, canonicalId: '00000000-0000-4000-8000-0000000000ff' }),
      cleanup: () => repo.cleanup(),
    };
  };
}

iaasConformance('nimbus (Cumulus layout on Swift s3api)', harnessFor('conformance', {}), skip);
iaasConformance('nimbus (gzip-compressed images)', harnessFor('conformance-gz', { compress: 'gzip' }), skip);
