import axios from 'axios';
import { GlanceDriver, type GlanceDriverOptions } from '../../../adapters/glance/index.js';
import type { KeystoneCredentials } from '../../../adapters/glance/client-keystone.js';
import { retireModes } from '../../../core/iaas/port.js';
import type { OpenStackPeer, OpenStackUser } from '../../peers/openstack.js';

/** Shared set-up of the Glance adapter tests: the real peer, drivers per user, raw API access. */

export const peerStartTimeout = 15 * 60_000;

export function passwordCredentials(
  user: OpenStackUser,
  overrides: Partial<Extract<KeystoneCredentials, { type: 'password' }>> = {},
): KeystoneCredentials {
  return {
    type: 'password',
    username: user.username,
    password: user.password,
    userDomainName: user.userDomainName,
    projectName: user.projectName,
    projectDomainName: user.projectDomainName,
    ...overrides,
  };
}

export function makeDriver(
  peer: OpenStackPeer,
  who: 'admin' | 'demo',
  options: Partial<GlanceDriverOptions> = {},
): GlanceDriver {
  return new GlanceDriver({
    authUrl: peer.authUrl,
    region: peer.region,
    interface: 'public',
    credentials: passwordCredentials(peer[who]),
    importMethod: 'upload',
    pageSize: 200,
    requestTimeoutMs: 60_000,
    pollIntervalMs: 250,
    retireModes,
    ...options,
  });
}

/** A raw Keystone token + Glance calls, for what the tests do behind the driver's back. */
export async function rawToken(peer: OpenStackPeer, who: 'admin' | 'demo'): Promise<string> {
  const user = peer[who];
  const response = await axios.post(`${peer.authUrl}/auth/tokens`, {
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: user.username, domain: { name: user.userDomainName }, password: user.password } },
      },
      scope: { project: { name: user.projectName, domain: { name: user.projectDomainName } } },
    },
  });
  return String(response.headers['x-subject-token']);
}

export async function glanceApi(peer: OpenStackPeer, who: 'admin' | 'demo') {
  const token = await rawToken(peer, who);
  return axios.create({
    baseURL: peer.glanceUrl,
    headers: { 'X-Auth-Token': token, Accept: 'application/json' },
    validateStatus: () => true,
  });
}

/** Images whose name starts with `prefix`, hidden ones included, as admin sees them. */
export async function imagesNamed(
  peer: OpenStackPeer,
  prefix: string,
): Promise<Array<{ id: string; name: string; status: string }>> {
  const api = await glanceApi(peer, 'admin');
  const out: Array<{ id: string; name: string; status: string }> = [];
  for (const hidden of ['false', 'true']) {
    const response = await api.get('/v2/images', { params: { limit: 1000, os_hidden: hidden, visibility: 'all' } });
    for (const image of response.data.images as Array<{ id: string; name: string | null; status: string }>) {
      if (image.name?.startsWith(prefix)) out.push({ id: image.id, name: image.name, status: image.status });
    }
  }
  return out;
}

/** Deletes images left by a test (as admin, unprotecting first). */
export async function deleteImagesNamed(peer: OpenStackPeer, prefix: string): Promise<void> {
  const api = await glanceApi(peer, 'admin');
  for (const image of await imagesNamed(peer, prefix)) {
    await api.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/protected', value: false }], {
      headers: { 'Content-Type': 'application/openstack-images-v2.1-json-patch' },
    });
    await api.delete(`/v2/images/${image.id}`);
  }
}
