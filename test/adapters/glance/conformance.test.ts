import { iaasConformance, type ConformanceHarness } from '../../../core/testing/iaas-conformance.js';
import { requirePeer } from '../../peers/index.js';
import type { OpenStackPeer } from '../../peers/openstack.js';
import { glanceApi, makeDriver, passwordCredentials } from './harness.js';
import { createMemberProjects, listedFor, type MemberProject } from './member-projects.js';

/** The IaasDriver conformance suite against a real Glance, once as admin and once as a project member. */

// Started while the file is collected, so that a peer that cannot run here skips the suites with its reason.
const { peer: started, skip } = await requirePeer('openstack');

function harnessFor(who: 'admin' | 'demo'): () => Promise<ConformanceHarness> {
  return async () => {
    const peer = started as OpenStackPeer;
    // Two projects of this suite's own to share with; the driver holds the first one's credentials.
    const members = await createMemberProjects(peer, 2, `conf-${who}`);
    const [first, second] = members.projects as [MemberProject, MemberProject];
    return {
      driver: async () => makeDriver(peer, who, { memberCredentials: [first.credentials] }),
      sharing: {
        principals: [first.id, second.id],
        addByHand: async (id, project) => {
          const api = await glanceApi(peer, who);
          const response = await api.post(`/v2/images/${id}/members`, { member: project });
          if (response.status !== 200) throw new Error(`adding a member by hand: ${response.status}`);
        },
        sees: async (project, id) => listedFor(project === first.id ? first : second, id),
      },
      pagedDriver: async (pageSize) => makeDriver(peer, who, { pageSize }),
      badCredentialsDriver: async () =>
        makeDriver(peer, who, { credentials: passwordCredentials(peer[who], { password: 'not-the-password' }) }),
      // The other project: an admin token sees every project's images in Glance, a listing must not.
      otherOwnerDriver: async () => makeDriver(peer, who === 'admin' ? 'demo' : 'admin'),
      createUnmarked: async (name) => {
        const api = await glanceApi(peer, who);
        const response = await api.post('/v2/images', {
          name,
          disk_format: 'raw',
          container_format: 'bare',
          visibility: 'private',
        });
        if (response.status !== 201)
          throw new Error(`creating an unmarked image failed: ${response.status} ${JSON.stringify(response.data)}`);
        return String(response.data.id);
      },
      cleanup: async () => {
        await members.remove();
        // The suite deletes what it creates through the driver; the unmarked images are ours to remove.
        const api = await glanceApi(peer, who);
        const response = await api.get('/v2/images', { params: { limit: 1000 } });
        for (const image of response.data.images as Array<{ id: string; name: string | null }>) {
          if (image.name?.startsWith('visor-conformance-') && image.name.includes('-unmarked-'))
            await api.delete(`/v2/images/${image.id}`);
        }
      },
    };
  };
}

iaasConformance('glance (admin)', harnessFor('admin'), skip);
iaasConformance('glance (member)', harnessFor('demo'), skip);
