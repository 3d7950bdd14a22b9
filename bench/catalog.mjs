// Catalog benchmark: insert 10,000 images into the embedded (SQLite) catalog, then list them
// with a filter and a sort (whole result, and paged). Run: npm run build && node bench/catalog.mjs
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteCatalog } from '../dist/core/catalog/sqlite/sqlite-catalog.js';
import { newImage } from '../dist/core/image/image.js';

const N = Number(process.env.BENCH_IMAGES ?? 10_000);
const dir = mkdtempSync(join(tmpdir(), 'visor-bench-catalog-'));
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const arches = ['x86_64', 'aarch64', 'ppc64le', 'i386'];
const distros = ['ubuntu', 'debian', 'centos', 'alpine', 'fedora'];

const catalog = new SqliteCatalog({ path: join(dir, 'catalog.db') });
await catalog.init();
const images = Array.from({ length: N }, (_, i) =>
  newImage({
    name: `image-${String(i).padStart(5, '0')}`,
    architecture: arches[i % arches.length],
    diskFormat: i % 2 ? 'qcow2' : 'raw',
    size: (i * 7919) % 10_000_000,
    os: { distro: distros[i % distros.length], version: String(10 + (i % 14)) },
    tags: i % 3 ? ['lts'] : ['edge'],
    properties: { hw_disk_bus: i % 2 ? 'virtio' : 'scsi', build: String(i) },
  }),
);

let t0 = process.hrtime.bigint();
for (const image of images) await catalog.images.create(image);
const insertMs = ms(t0);

const query = { filters: { architecture: 'x86_64', 'os.distro': 'ubuntu' }, sort: 'size', dir: 'desc' };
const runs = 20;
t0 = process.hrtime.bigint();
let matched = 0;
for (let r = 0; r < runs; r++) matched = (await catalog.images.list(query)).items.length;
const listMs = ms(t0) / runs;

t0 = process.hrtime.bigint();
let pages = 0;
let marker;
do {
  const page = await catalog.images.list({ ...query, limit: 100, ...(marker ? { marker } : {}) });
  marker = page.nextMarker;
  pages++;
} while (marker);
const pagedMs = ms(t0);

t0 = process.hrtime.bigint();
for (let r = 0; r < runs; r++)
  await catalog.images.list({
    filters: { 'properties.hw_disk_bus': 'virtio', tags: 'lts' },
    sort: 'name',
    limit: 1000,
  });
const propMs = ms(t0) / runs;

t0 = process.hrtime.bigint();
for (let r = 0; r < runs; r++) await catalog.images.list({ sort: 'name', limit: 1000 });
const firstPageMs = ms(t0) / runs;

await catalog.close();
rmSync(dir, { recursive: true, force: true });

const rows = [
  [
    'insert (one transaction + fsync each)',
    `${N} images`,
    `${insertMs.toFixed(0)} ms`,
    `${(N / (insertMs / 1000)).toFixed(0)} images/s`,
  ],
  ['list: architecture + os.distro filter, sort size desc', `${matched} matches`, `${listMs.toFixed(1)} ms`, ''],
  [
    'same, paged by 100 (marker)',
    `${pages} pages`,
    `${pagedMs.toFixed(1)} ms`,
    `${(pagedMs / pages).toFixed(2)} ms/page`,
  ],
  ['list: custom property + tag filter, sort name, limit 1000', '', `${propMs.toFixed(1)} ms`, ''],
  ['list: first 1000 by name (indexed)', '', `${firstPageMs.toFixed(1)} ms`, ''],
];
console.log(`catalog benchmark (SQLite, ${N} images, node ${process.version})`);
for (const r of rows) console.log(`  ${r[0].padEnd(58)} ${r[1].padEnd(14)} ${r[2].padStart(10)}  ${r[3]}`);
