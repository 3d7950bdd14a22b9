import { randomBytes } from 'node:crypto';
import axios from 'axios';
import type { KeystoneCredentials } from '../../../adapters/glance/client-keystone.js';
import type { OpenStackPeer } from '../../peers/openstack.js';
import { rawToken } from './harness.js';

/**
 * Projects of this test's own in the shared Keystone, each with one user (role member), to
 * share images with: created with the admin credentials the peer exposes, uniquely named, and
 * removed again. Never the peer's own admin or demo project: other helpers' tests use those.
 */
export interface MemberProject {
  id: string;
  name: string;
  username: string;
  password: string;
  credentials: KeystoneCredentials;
  /** Glance as this project sees it (its token), statuses not thrown. */
  glance(): Promise<ReturnType<typeof axios.create>>;
}

export interface MemberProjects {
  projects: MemberProject[];
  remove(): Promise<void>;
}

export async function createMemberProjects(peer: OpenStackPeer, count: number, label: string): Promise<MemberProjects> {
  const token = await rawToken(peer, 'admin');
  const keystone = axios.create({
    baseURL: peer.authUrl,
    headers: { 'X-Auth-Token': token },
    validateStatus: () => true,
  });
  const check = (response: { status: number; data: unknown }, what: string) => {
    if (response.status >= 300)
      throw new Error(`${what}: Keystone answered ${response.status} ${JSON.stringify(response.data)}`);
    return response.data as Record<string, Record<string, string>>;
  };
  const roles = check(
    await keystone.get('/roles', { params: { name: 'member' } }),
    'finding role member',
  ) as unknown as {
    roles: Array<{ id: string }>;
  };
  const roleId = roles.roles[0]?.id;
  if (!roleId) throw new Error('Keystone has no role "member"');
  const suffix = randomBytes(4).toString('hex');
  const projects: MemberProject[] = [];
  const created: Array<{ project: string; user: string }> = [];
  const remove = async () => {
    for (const { project, user } of created) {
      await keystone.delete(`/users/${user}`);
      await keystone.delete(`/projects/${project}`);
    }
  };
  try {
    for (let i = 0; i < count; i++) {
      const name = `visor-${label}-${suffix}-${i}`;
      const password = randomBytes(12).toString('hex');
      const body = {
        project: { name, domain_id: 'default', description: 'visor test project (removed after the test)' },
      };
      const project = check(await keystone.post('/projects', body), `creating project ${name}`)['project']!;
      const userBody = { user: { name, password, domain_id: 'default', default_project_id: project['id'] } };
      const user = check(await keystone.post('/users', userBody), `creating user ${name}`)['user']!;
      created.push({ project: project['id']!, user: user['id']! });
      const grant = await keystone.put(`/projects/${project['id']}/users/${user['id']}/roles/${roleId}`);
      check(grant, `granting member on ${name}`);
      const credentials: KeystoneCredentials = {
        type: 'password',
        username: name,
        password,
        userDomainName: 'Default',
        projectName: name,
        projectDomainName: 'Default',
      };
      const glance = async () => {
        const auth = {
          identity: { methods: ['password'], password: { user: { name, domain: { name: 'Default' }, password } } },
          scope: { project: { name, domain: { name: 'Default' } } },
        };
        const response = await axios.post(`${peer.authUrl}/auth/tokens`, { auth });
        const headers = { 'X-Auth-Token': String(response.headers['x-subject-token']), Accept: 'application/json' };
        return axios.create({ baseURL: peer.glanceUrl, headers, validateStatus: () => true });
      };
      projects.push({ id: project['id']!, name, username: name, password, credentials, glance });
    }
  } catch (error) {
    await remove();
    throw error;
  }
  return { projects, remove };
}

/** Whether the project's default image listing (as `openstack image list` shows it) has the image. */
export async function listedFor(project: MemberProject, nativeId: string): Promise<boolean> {
  const api = await project.glance();
  const response = await api.get('/v2/images', { params: { limit: 1000, id: `in:${nativeId}` } });
  if (response.status !== 200) throw new Error(`listing as ${project.name}: ${response.status}`);
  return (response.data.images as Array<{ id: string }>).some((i) => i.id === nativeId);
}
