// The real Keystone + Glance peer (test/peers/openstack, Debian packages, loopback) and the raw
// calls the benchmarks make on it: tokens, records, curl uploads and downloads, cleanup.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const baseDir = '/tmp/visor-openstack';
const script = fileURLToPath(new URL('../../test/peers/openstack/start-openstack.sh', import.meta.url));

/** Starts the peer (idempotent: a running, healthy peer is left alone), as test/peers/openstack.ts does. */
export async function startGlance() {
  await run('bash', [script, baseDir, '25000'], { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024 });
  const env = JSON.parse(await readFile(`${baseDir}/env.json`, 'utf8'));
  return {
    authUrl: env.auth_url,
    glanceUrl: env.image_url,
    region: env.region,
    admin: env.admin,
    baseDir,
    glancePid: env.pids?.glance,
    /** Environment of Debian's `openstack` CLI, as admin-openrc.sh sets it. */
    openrc: {
      OS_AUTH_URL: env.auth_url,
      OS_IDENTITY_API_VERSION: '3',
      OS_AUTH_TYPE: 'password',
      OS_USERNAME: env.admin.username,
      OS_PASSWORD: env.admin.password,
      OS_PROJECT_NAME: env.admin.project_name,
      OS_USER_DOMAIN_NAME: env.admin.user_domain_name,
      OS_PROJECT_DOMAIN_NAME: env.admin.project_domain_name,
      OS_REGION_NAME: env.region,
      OS_INTERFACE: 'public',
      OS_IMAGE_API_VERSION: '2',
    },
  };
}

export async function adminToken(peer) {
  const a = peer.admin;
  const response = await fetch(`${peer.authUrl}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: a.username, domain: { name: a.user_domain_name }, password: a.password } },
        },
        scope: { project: { name: a.project_name, domain: { name: a.project_domain_name } } },
      },
    }),
  });
  if (response.status !== 201) throw new Error(`Keystone refused the admin token: HTTP ${response.status}`);
  await response.body?.cancel();
  return response.headers.get('x-subject-token');
}

export async function glance(peer, token, method, path, body) {
  const response = await fetch(`${peer.glanceUrl}${path}`, {
    method,
    headers: {
      'x-auth-token': token,
      accept: 'application/json',
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  if (response.status >= 400)
    throw new Error(`Glance ${method} ${path}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

export async function createRecord(peer, token, name, extra = {}) {
  return glance(peer, token, 'POST', '/v2/images', {
    name,
    disk_format: 'raw',
    container_format: 'bare',
    visibility: 'private',
    ...extra,
  });
}

/** `curl -T file` into PUT /v2/images/{id}/file. */
export async function curlUpload(peer, token, id, file) {
  await run('curl', [
    '-sS',
    '-f',
    '-X',
    'PUT',
    '-H',
    `X-Auth-Token: ${token}`,
    '-H',
    'Content-Type: application/octet-stream',
    '-T',
    file,
    `${peer.glanceUrl}/v2/images/${id}/file`,
  ]);
}

export async function curlDownload(peer, token, id) {
  await run('curl', [
    '-sS',
    '-f',
    '-o',
    '/dev/null',
    '-H',
    `X-Auth-Token: ${token}`,
    `${peer.glanceUrl}/v2/images/${id}/file`,
  ]);
}

/** Every image whose name starts with `prefix` (hidden ones too), following pages. */
export async function imagesNamed(peer, token, prefix) {
  const found = [];
  for (const hidden of ['false', 'true']) {
    let next = `/v2/images?limit=1000&visibility=all&os_hidden=${hidden}`;
    while (next) {
      const page = await glance(peer, token, 'GET', next);
      for (const image of page.images) if (image.name?.startsWith(prefix)) found.push(image);
      next = page.next;
    }
  }
  return found;
}

export async function deleteImagesNamed(peer, token, prefix, concurrency = 4) {
  const images = await imagesNamed(peer, token, prefix);
  await parallel(images, concurrency, (image) =>
    glance(peer, token, 'DELETE', `/v2/images/${image.id}`).catch(() => undefined),
  );
  return images.length;
}

export async function parallel(items, concurrency, fn) {
  let next = 0;
  const results = [];
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
