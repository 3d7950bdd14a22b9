import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { bufferContent, randomImageBytes } from '../../support/content.js';
import { iaasConformance, type ConformanceHarness } from '../../../core/testing/iaas-conformance.js';
import { startOpenNebulaDouble, type OpenNebulaDouble } from '../../doubles/opennebula/index.js';
import { driverFor, expectValidDocuments, startContentServer, type ContentServer } from './harness.js';

/**
 * The IaasDriver conformance suite against the OpenNebula double, once per reply generation
 * and once per mode: current oned (7.x replies) with PATH a URL the agent serves (remote
 * mode), and 5.x replies with PATH a file beside oned (local mode, which also downloads).
 */

const doubles: OpenNebulaDouble[] = [];
const servers: ContentServer[] = [];
const folders: string[] = [];

afterAll(async () => {
  try {
    await expectValidDocuments(doubles);
  } finally {
    for (const d of doubles) await d.close();
    for (const s of servers) await s.close();
    for (const f of folders) await rm(f, { recursive: true, force: true });
  }
});

iaasConformance('opennebula (oned 7.x replies, remote mode)', async (): Promise<ConformanceHarness> => {
  // Two groups to share with; oneadmin's images live in its primary group 0 when shared with no one.
  const groups = [
    { id: 100, name: 'vo-alpha' },
    { id: 101, name: 'vo-beta' },
  ];
  const double = await startOpenNebulaDouble({ generation: 7, groups });
  const server = await startContentServer();
  doubles.push(double);
  servers.push(server);
  return {
    driver: async () => driverFor(double, { homeGroup: 0 }),
    sharing: { principals: ['100', '101'] },
    pagedDriver: async (pageSize) => driverFor(double, { pageSize }),
    badCredentialsDriver: async () => driverFor(double, { password: 'not-the-password' }),
    createUnmarked: async (name) => String(double.addImage({ name, uid: 0 }).id),
    // Another user: oneadmin may read every image, but its listing (ownership mine) must not show theirs.
    otherOwnerDriver: async () => driverFor(double, { username: 'user' }),
    content: async () => server.content(randomImageBytes()),
  };
});

iaasConformance('opennebula (oned 5.x replies, local mode)', async (): Promise<ConformanceHarness> => {
  const staging = await mkdtemp(join(tmpdir(), 'visor-one-staging-'));
  folders.push(staging);
  const double = await startOpenNebulaDouble({
    generation: 5,
    groups: [
      { id: 100, name: 'vo-alpha' },
      { id: 101, name: 'vo-beta' },
    ],
    datastores: [
      {
        id: 1,
        name: 'default',
        type: 0,
        template: { SAFE_DIRS: staging, RESTRICTED_DIRS: '/', TYPE: 'IMAGE_DS', DS_MAD: 'fs', TM_MAD: 'ssh' },
      },
    ],
  });
  doubles.push(double);
  return {
    driver: async () => driverFor(double, { mode: 'local', stagingDir: staging, datastore: 1, homeGroup: 0 }),
    sharing: { principals: ['100', '101'] },
    pagedDriver: async (pageSize) => driverFor(double, { mode: 'local', stagingDir: staging, datastore: 1, pageSize }),
    badCredentialsDriver: async () =>
      driverFor(double, { mode: 'local', stagingDir: staging, datastore: 1, username: 'nobody' }),
    createUnmarked: async (name) => String(double.addImage({ name, uid: 0 }).id),
    otherOwnerDriver: async () =>
      driverFor(double, { mode: 'local', stagingDir: staging, datastore: 1, username: 'user' }),
    content: async () => bufferContent(randomImageBytes()),
  };
});
