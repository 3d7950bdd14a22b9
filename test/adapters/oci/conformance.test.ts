import { randomBytes } from 'node:crypto';
import { OciDriver, type OciDriverOptions } from '../../../adapters/oci/driver.js';
import { OciClient } from '../../../core/wire/oci/client.js';
import { emptyConfig, mediaTypes } from '../../../core/wire/oci/media.js';
import { iaasConformance } from '../../../core/testing/iaas-conformance.js';
import { bufferContent, randomImageBytes } from '../../../core/testing/content.js';
import { requirePeer } from '../../peers/index.js';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * The oci adapter passes the IaaS conformance suite against a real registry (Debian's
 * docker-registry, distribution 2.8), with htpasswd auth: each run in its own repository.
 */
const { peer, skip } = await requirePeer('oci-registry');

const repository = `visor-test/conformance-${randomBytes(4).toString('hex')}`;
const other = `visor-test/conformance-other-${randomBytes(4).toString('hex')}`;

function driver(options: Partial<OciDriverOptions> = {}): OciDriver {
  return new OciDriver({
    registry: new URL(peer!.basic).host,
    plainHttp: true,
    credentials: { username: peer!.user, password: peer!.password },
    repository,
    access: 'private',
    chunkBytes: 16 * 1024,
    ...options,
  });
}

iaasConformance(
  'oci (docker-registry)',
  async () => ({
    driver: async () => driver(),
    pagedDriver: async (pageSize) => driver({ pageSize }),
    badCredentialsDriver: async () => driver({ credentials: { username: peer!.user, password: 'not-the-password' } }),
    otherOwnerDriver: async () => driver({ repository: other }),
    content: async () => bufferContent(randomImageBytes(200 * 1024)),
    createUnmarked: async (name) => {
      // What `oras push` makes: a disk artifact with EGI's annotations and no markers of visor's.
      const client = new OciClient({
        registry: new URL(peer!.basic).host,
        plainHttp: true,
        credentials: { username: peer!.user, password: peer!.password },
      });
      try {
        const layer = randomBytes(4096);
        const digest = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
        const open = async () => Readable.from([layer]);
        await client.pushBlob(repository, {
          digest: emptyConfig.digest,
          size: 2,
          open: async () => Readable.from(['{}']),
        });
        await client.pushBlob(repository, { digest, size: layer.length, open });
        const manifest = {
          schemaVersion: 2,
          mediaType: mediaTypes.ociManifest,
          artifactType: mediaTypes.qemuDisk,
          config: { mediaType: mediaTypes.empty, digest: emptyConfig.digest, size: 2 },
          layers: [{ mediaType: mediaTypes.qemuDisk, digest, size: layer.length }],
          annotations: { 'org.opencontainers.image.title': name, 'org.openstack.glance.os_distro': 'ubuntu' },
        };
        await client.putManifest(repository, name, Buffer.from(JSON.stringify(manifest)), mediaTypes.ociManifest);
        return name;
      } finally {
        await client.close();
      }
    },
  }),
  skip,
);
