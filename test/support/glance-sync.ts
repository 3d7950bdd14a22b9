import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Caller } from '../../agent/service/access.js';
import type { ImageService } from '../../agent/service/image-service.js';
import type { SyncSession } from '../../agent/session.js';
import { catalogSnapshot } from '../../agent/sync/runner.js';
import type { Image } from '../../core/image/model.js';
import { glanceApi } from '../adapters/glance/harness.js';
import type { OpenStackPeer } from '../peers/openstack.js';

/**
 * Shared by the fault and crash suites: a visor config for the real Glance (possibly through a
 * proxy), small disk images, and the checks that a sync left Glance and the catalog as they must
 * be — one good marked copy per selected image, nothing stuck, nothing orphaned.
 */

export const testCaller: Caller = { name: 'suite', admin: true };

export interface CloudConfig {
  /** Name under `clouds:`. */
  name: string;
  authUrl: string;
  peer: OpenStackPeer;
  prefix: string;
  tag: string;
  /** Seconds (glance `timeouts.request`). */
  requestTimeout?: number;
  retire?: 'hide' | 'delete';
  attempts?: number;
  backoff?: string;
  actionTimeout?: string;
  listTimeout?: string;
  concurrency?: number;
}

export function cloudYaml(c: CloudConfig): string {
  const user = c.peer.admin;
  return (
    `  ${c.name}:
    adapter: glance
    options:
      authUrl: ${c.authUrl}
      region: ${c.peer.region}
      pollInterval: 0.2
      timeouts: { request: ${c.requestTimeout ?? 2} }
      auth: { type: password, username: ${user.username}, ` +
    `password: '${user.password}', projectName: ${user.projectName} }
    sync:
      selector: { tags: [${c.tag}], access: [public, private] }
      naming: '${c.prefix}{name}'
      retire: { mode: ${c.retire ?? 'hide'} }
      concurrency: ${c.concurrency ?? 2}
      retries: { attempts: ${c.attempts ?? 3}, backoff: ${c.backoff ?? '200ms'} }
      timeouts: { action: ${c.actionTimeout ?? '60s'}, list: ${c.listTimeout ?? '20s'} }
`
  );
}

export async function writeSyncConfig(dir: string, agentId: string, clouds: readonly CloudConfig[]): Promise<string> {
  const file = join(dir, 'visor.yaml');
  await writeFile(
    file,
    `dataDir: ${join(dir, 'data')}\nlogging: { level: error }\nagent: { id: ${agentId}, ` +
      `leaseSeconds: 10, concurrency: 4 }\nclouds:\n${clouds.map(cloudYaml).join('')}`,
  );
  return file;
}

/** A disk image file of about `bytes`: random raw data, or that data converted to qcow2 with qemu-img. */
export async function makeDisk(dir: string, name: string, format: 'raw' | 'qcow2', bytes: number): Promise<string> {
  const raw = join(dir, `${name}.raw`);
  await writeFile(raw, randomBytes(bytes));
  if (format === 'raw') return raw;
  const qcow2 = join(dir, `${name}.qcow2`);
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  return qcow2;
}

export async function addImage(
  images: ImageService,
  name: string,
  file: string,
  format: 'raw' | 'qcow2',
  tags: string[],
  extra: Record<string, unknown> = {},
): Promise<Image> {
  const image = await images.register(testCaller, {
    name,
    architecture: 'x86_64',
    diskFormat: format,
    tags,
    access: 'public',
    ...extra,
  });
  return images.upload(testCaller, image.id, createReadStream(file), { size: (await stat(file)).size });
}

export async function uploadContent(images: ImageService, id: string, file: string): Promise<Image> {
  return images.upload(testCaller, id, createReadStream(file), { size: (await stat(file)).size });
}

export type GlanceRecord = Record<string, unknown> & { id: string; name: string; status: string };

/** Every Glance image whose name starts with `prefix` (hidden ones too), as admin sees it, straight from Glance. */
export async function glanceImages(peer: OpenStackPeer, prefix: string): Promise<GlanceRecord[]> {
  const api = await glanceApi(peer, 'admin');
  const out = new Map<string, GlanceRecord>();
  for (const hidden of ['false', 'true']) {
    let url: string | undefined = `/v2/images?limit=1000&os_hidden=${hidden}&visibility=all`;
    while (url) {
      const response = await api.get(url);
      if (response.status !== 200) throw new Error(`Glance listing failed: HTTP ${response.status}`);
      const page = response.data as { images: GlanceRecord[]; next?: string };
      for (const image of page.images)
        if (typeof image.name === 'string' && image.name.startsWith(prefix)) out.set(image.id, image);
      url = page.next;
    }
  }
  return [...out.values()];
}

export interface Expectation {
  peer: OpenStackPeer;
  session: SyncSession;
  prefix: string;
  tag: string;
  agentId: string;
  retire: 'hide' | 'delete';
}

/**
 * What must hold in Glance after a converged sync, as a list of problems (empty when all is
 * well), so that a failure names each one:
 * - every selected catalog image has exactly one visible, active, marked copy with its size,
 *   md5, sha512, sha256 marker, revision and name;
 * - nothing of ours is queued, saving, importing, killed or otherwise unfinished;
 * - every other marked copy is retired per policy (hidden with `hide`; gone with `delete`);
 * - nothing under our prefix is unmarked (an orphan the agent would never find again).
 */
export async function glanceProblems(
  e: Expectation,
): Promise<{ problems: string[]; records: GlanceRecord[]; catalog: Image[] }> {
  const records = await glanceImages(e.peer, e.prefix);
  const catalog = await catalogSnapshot(e.session.deps.catalog);
  // The suites' selector: the tag (every image is public, and both public and private are selected).
  const selected = catalog.filter((i) => i.status === 'available' && i.tags.includes(e.tag));
  const problems: string[] = [];
  const kept = new Set<string>();
  for (const image of selected) {
    const copies = records.filter((r) => r['visor_image_id'] === image.id && r['visor_agent'] === e.agentId);
    const good = copies.filter(
      (r) =>
        r.status === 'active' &&
        r['os_hidden'] !== true &&
        r['visor_sha256'] === image.checksums.sha256 &&
        r['checksum'] === image.checksums.md5 &&
        r['os_hash_value'] === image.checksums.sha512 &&
        r['size'] === image.size &&
        r['visor_revision'] === String(image.revision) &&
        r.name === `${e.prefix}${image.name}`,
    );
    if (good.length !== 1)
      problems.push(
        `catalog image ${image.name} (${image.id}) has ${good.length} good ` +
          `copies in Glance (copies: ${copies.map(describe).join(', ') || 'none'})`,
      );
    for (const g of good.slice(0, 1)) kept.add(g.id);
    const visible = copies.filter((r) => r['os_hidden'] !== true);
    if (visible.length > 1)
      problems.push(
        `catalog image ${image.name} has ${visible.length} visible copies: ${visible.map(describe).join(', ')}`,
      );
  }
  for (const r of records) {
    if (r.status !== 'active') problems.push(`image ${describe(r)} is ${r.status}: unfinished or failed`);
    if (r['visor_agent'] !== e.agentId) {
      problems.push(`image ${describe(r)} carries no marker of agent ${e.agentId}: an orphan`);
      continue;
    }
    if (kept.has(r.id)) continue;
    if (e.retire === 'delete') problems.push(`image ${describe(r)} should have been deleted (retire mode delete)`);
    else if (r['os_hidden'] !== true)
      problems.push(`image ${describe(r)} is neither the good copy nor retired (hidden)`);
  }
  return { problems, records, catalog };
}

function describe(r: GlanceRecord): string {
  const hidden = r['os_hidden'] === true ? ',hidden' : '';
  const sha = String(r['visor_sha256']).slice(0, 8);
  return `${r.id.slice(0, 8)}[${r.status}${hidden},rev ${String(r['visor_revision'])},sha ${sha}]`;
}

/**
 * What must hold in the catalog: every image available (or deleted softly, restorable) with its
 * bits in the store (size as recorded), and the target's last run succeeded with nothing left to do.
 */
export async function catalogProblems(session: SyncSession, target: string): Promise<string[]> {
  const problems: string[] = [];
  for (const image of await catalogSnapshot(session.deps.catalog)) {
    // Deleted softly (the default): kept with its bits, restorable, until its purge time.
    const softlyDeleted = image.status === 'deleted' && image.purgeAfter !== undefined;
    if (image.status !== 'available' && !softlyDeleted) problems.push(`catalog image ${image.name} is ${image.status}`);
    if (!image.location) {
      problems.push(`catalog image ${image.name} has no location`);
      continue;
    }
    const store = session.deps.stores.get(image.location.store);
    const info = await store?.head(image.location.uri).catch(() => undefined);
    if (!info) problems.push(`catalog image ${image.name}: its bits are missing from store ${image.location.store}`);
    else if (info.size !== image.size)
      problems.push(`catalog image ${image.name}: the store holds ${info.size} bytes, the catalog says ${image.size}`);
  }
  const last = (await session.deps.catalog.runs.list({ target, limit: 1 }))[0];
  if (!last) problems.push(`no run recorded for ${target}`);
  else if (last.status !== 'succeeded' || last.drift !== 0)
    problems.push(
      `the last run of ${target} is ${last.status} with ` +
        `drift ${String(last.drift)}${last.error ? `: ${last.error}` : ''}`,
    );
  return problems;
}
