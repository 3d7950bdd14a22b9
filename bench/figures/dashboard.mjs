// The dashboard's catalog page with 100,000 images in the SQLite catalog: the requests the page
// makes (GET /images/detail, 25 a page, sorted by name; with ?search=) answered by `visor serve`
// in its own process, as an admin and as a user who sees only public images and their own.
// Wall time per request (median and slowest of the runs) and the server's CPU time per request
// (from /proc/PID/stat: wall time is noisy on a shared machine).
// Run alone: npm run build && node bench/figures/dashboard.mjs [--images N] [--runs N]
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { loadVisor } from '../lib/visor.mjs';

const run = promisify(execFile);
const ticks = 100; // USER_HZ on Linux

function cpuSecondsOf(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

/**
 * Fills the catalog file with `count` images in one transaction (setup, not measured: the API
 * would take an upload per image). Nine in ten are public, the rest private to the admin.
 */
async function fill(dist, path, count, adminId) {
  const { SqliteCatalog } = await import(`${dist}/core/catalog/sqlite/sqlite-catalog.js`);
  const { newImage } = await import(`${dist}/core/image/image.js`);
  const catalog = new SqliteCatalog({ path });
  await catalog.init();
  const distros = ['ubuntu', 'debian', 'almalinux', 'fedora', 'alpine'];
  const arches = ['x86_64', 'aarch64'];
  const insert = catalog.db.prepare('INSERT INTO images (id, revision, doc) VALUES (?, ?, ?)');
  catalog.db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const distro = distros[i % distros.length];
      const image = newImage({
        name: `${distro}-${String(i).padStart(6, '0')}`,
        architecture: arches[i % arches.length],
        diskFormat: i % 3 ? 'qcow2' : 'raw',
        access: i % 10 ? 'public' : 'private',
        owner: adminId,
        size: (i * 7919) % 10_000_000,
        tags: i % 4 ? ['lts'] : ['edge'],
        properties: { description: `${distro} cloud image, build ${i}` },
      });
      insert.run(image.id, image.revision, JSON.stringify(image));
    }
  })();
  await catalog.close();
}

export async function dashboardFigures({ dist, count = 100_000, runs = 20, log = console.error }) {
  const visor = await loadVisor(dist);
  const dir = await mkdtemp(join(tmpdir(), 'visor-bench-dashboard-'));
  const config = join(dir, 'visor.yaml');
  await writeFile(config, `dataDir: ${join(dir, 'data')}\nserver: { host: 127.0.0.1 }\n`);
  let server;
  try {
    const admin = await visor.addUser(config);
    const { stdout } = await run(process.execPath, [visor.bin, 'users', 'add', 'viewer', '-c', config, '--json']);
    const viewer = JSON.parse(stdout);
    const adminId = (await run(process.execPath, [visor.bin, 'users', 'list', '-c', config, '--json'])).stdout;
    const id = JSON.parse(adminId).find((u) => u.name === 'bench').id;
    log(`  filling the SQLite catalog with ${count} images`);
    await fill(dist, join(dir, 'data', 'catalog.db'), count, id);
    server = await visor.startServer(config);
    const cases = [
      ['first page (25, sort name)', {}],
      ['search, one match (name)', { search: 'Ubuntu-042425' }],
      ['search, many matches ("ubuntu")', { search: 'UBUNTU' }],
      ['search, no match (scans all)', { search: 'no-such-image' }],
      ['search + filter (x86_64, raw)', { search: 'debian', architecture: 'x86_64', format: 'raw' }],
    ];
    const rows = [];
    for (const [who, user] of [
      ['admin', admin],
      ['user', viewer],
    ]) {
      for (const [label, extra] of cases) {
        const query = new URLSearchParams({ limit: '25', sort: 'name', dir: 'asc', ...extra });
        const path = `/images/detail?${query}`;
        const get = async () => {
          const response = await fetch(`${server.url}${path}`, { headers: visor.signedHeaders(user, 'GET', path) });
          if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
          return (await response.json()).images.length;
        };
        const listed = await get(); // warm: statements prepared, pages cached
        const walls = [];
        const cpu0 = cpuSecondsOf(server.pid);
        for (let r = 0; r < runs; r++) {
          const t0 = process.hrtime.bigint();
          await get();
          walls.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        const cpuMs = ((cpuSecondsOf(server.pid) - cpu0) * 1000) / runs;
        walls.sort((a, b) => a - b);
        const row = { who, label, listed, p50Ms: walls[Math.floor(runs / 2)], maxMs: walls[runs - 1], cpuMs };
        rows.push(row);
        log(
          `  ${who.padEnd(5)} ${label.padEnd(34)} ${String(listed).padStart(3)} listed  ` +
            `${row.p50Ms.toFixed(1)} ms median, ${row.maxMs.toFixed(1)} ms max, ${cpuMs.toFixed(1)} ms CPU`,
        );
      }
    }
    return { images: count, runs, rows };
  } finally {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name, fallback) => {
    const at = process.argv.indexOf(name);
    return at > 0 ? Number(process.argv[at + 1]) : fallback;
  };
  const dist = resolve('dist');
  const result = await dashboardFigures({ dist, count: arg('--images', 100_000), runs: arg('--runs', 20) });
  console.log(JSON.stringify(result, null, 2));
}
