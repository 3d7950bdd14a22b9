import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OpenStackPeer } from '../peers/openstack.js';

/**
 * One `clouds:` entry syncing images tagged `tag` into the real Glance as its admin, named
 * `<prefix><name>`; `policy` is the rest of its sync block, each line indented by six spaces.
 */
export function glanceCloudYaml(
  name: string,
  peer: OpenStackPeer,
  selection: { tag: string; prefix: string },
  policy: string,
): string {
  return (
    `  ${name}:
    adapter: glance
    options:
      authUrl: ${peer.authUrl}
      region: ${peer.region}
      pollInterval: 1
      auth: { type: password, username: ${peer.admin.username}, password: ` +
    `'${peer.admin.password}', projectName: ${peer.admin.projectName} }
    sync:
      selector: { tags: [${selection.tag}], access: [public, private] }
      naming: '${selection.prefix}{name}'
${policy}`
  );
}

/** A visor config syncing images tagged `tag` into the real Glance, named `<prefix><name>`. */
export async function writeConfig(
  dir: string,
  peer: OpenStackPeer,
  names: { run: string; prefix: string; tag: string },
  extra = '',
): Promise<string> {
  const { run, prefix, tag } = names;
  const file = join(dir, 'visor.yaml');
  await writeFile(
    file,
    `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: e2e-agent-${run}, leaseSeconds: 10 }
clouds:
${glanceCloudYaml(
  'glance',
  peer,
  { tag, prefix },
  '      retire: { mode: hide }\n      retries: { attempts: 2, backoff: 1s }\n',
)}${extra}`,
  );
  return file;
}
