import { spawn } from 'node:child_process';
import { openrc, type OpenStackPeer } from '../peers/openstack.js';

/**
 * `openstack image show -f json` of many images, as an operator would look at them, in one
 * `openstack` process (its interactive mode reads the commands from standard input): one Python
 * start-up instead of one per image. Images that do not exist are left out of the result.
 */
export async function openstackImageShow(
  peer: OpenStackPeer,
  ids: readonly string[],
  who: 'admin' | 'demo' = 'admin',
): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  if (ids.length === 0) return out;
  const child = spawn('openstack', [], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...openrc(peer, who) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  child.stdin.end(ids.map((id) => `image show -f json ${id}\n`).join(''));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  // Each answer is one JSON object whose braces stand alone at the start of a line.
  let block: string[] | undefined;
  for (const line of stdout.split('\n')) {
    if (line === '{') block = [line];
    else if (block) {
      block.push(line);
      if (line === '}') {
        const record = JSON.parse(block.join('\n')) as Record<string, unknown>;
        out.set(String(record['id']), record);
        block = undefined;
      }
    }
  }
  const unexplained = ids.filter((id) => !out.has(id) && !stderr.includes(id) && !stdout.includes(id));
  if (code !== 0 || unexplained.length > 0)
    throw new Error(`openstack image show failed (exit ${code}): ${stderr.slice(-2000)}`);
  return out;
}
