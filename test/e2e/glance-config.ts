import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OpenStackPeer } from '../peers/openstack.js';

/** A visor config syncing images tagged `tag` into the real Glance, named `<prefix><name>`. */
export async function writeConfig(dir: string, peer: OpenStackPeer, names: { run: string; prefix: string; tag: string }, extra = ''): Promise<string> {
  const { run, prefix, tag } = names;
  const file = join(dir, 'visor.yaml');
  await writeFile(
    file,
    `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: e2e-agent-${run}, leaseSeconds: 10 }
clouds:
  glance:
    adapter: glance
    options:
      authUrl: ${peer.authUrl}
      region: ${peer.region}
      pollInterval: 1
      auth: { type: password, username: ${peer.admin.username}, password: '${peer.admin.password}', projectName: ${peer.admin.projectName} }
    sync:
      selector: { tags: [${tag}], access: [public, private] }
      naming: '${prefix}{name}'
      retire: { mode: hide }
      retries: { attempts: 2, backoff: 1s }
${extra}`,
  );
  return file;
}
