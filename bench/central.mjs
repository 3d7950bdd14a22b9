// Optional bench phase (not part of `npm run bench`): the central deployment's row. Two `visor
// serve` replicas on one PostgreSQL catalog against one `visor serve` on SQLite: `GET /images`
// with 1,000 images and signed ingest. Writes its own section of BENCHMARKS.md (between the
// `central-bench` markers) and leaves the rest of the file as it is.
//   npm run build && node bench/central.mjs
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { centralFigures } from './figures/central.mjs';
import { dist } from './lib/dist.mjs';
import { load, machine } from './lib/machine.mjs';
import { startPostgres } from './lib/postgresql.mjs';
import { loadVisor } from './lib/visor.mjs';

const env = process.env;
const settings = {
  images: Number(env.BENCH_API_IMAGES ?? 1000),
  connections: Number(env.BENCH_API_CONNECTIONS ?? 10),
  seconds: Number(env.BENCH_API_SECONDS ?? 15),
  warmup: 2,
  uploads: Number(env.BENCH_CENTRAL_UPLOADS ?? 200),
  uploadSize: Number(env.BENCH_CENTRAL_UPLOAD_BYTES ?? 256 * 1024),
  uploadConcurrency: Number(env.BENCH_CENTRAL_CONCURRENCY ?? 8),
};
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const output = env.BENCH_OUTPUT ?? join(repoRoot, 'BENCHMARKS.md');
const started = new Date();
const log = (m) =>
  process.stderr.write(`[central ${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)} s] ${m}\n`);

const saved = process.argv[2] === '--report' ? process.argv[3] : undefined;
const results = saved ? JSON.parse(readFileSync(saved, 'utf8')) : await measure();
if (!saved) writeFileSync(join(tmpdir(), 'visor-bench-central.json'), JSON.stringify(results, null, 2));
const begin = '<!-- central-bench:begin -->';
const end = '<!-- central-bench:end -->';
const section = [begin, render(results), end].join('\n');
const current = readFileSync(output, 'utf8');
const at = current.indexOf(begin);
const next =
  at >= 0
    ? current.slice(0, at) + section + current.slice(current.indexOf(end) + end.length)
    : `${current.trimEnd()}\n\n${section}\n`;
writeFileSync(output, next);
log(`wrote the central deployment section of ${output}`);

async function measure() {
  const base = mkdtempSync(join(env.BENCH_DIR ?? tmpdir(), 'visor-bench-central-'));
  const kit = await loadVisor(dist);
  const stops = [];
  try {
    const loadAtStart = load();
    log("PostgreSQL 15 of the bench's own");
    const postgres = await startPostgres();
    stops.push(postgres.stop);
    const config = (name, catalog) => {
      const file = join(base, `${name}.yaml`);
      writeFileSync(
        file,
        `dataDir: ${join(base, name)}
logging: { level: info, format: json }
${catalog}
stores: { local: { type: file, options: { path: ${join(base, `${name.replace(/-\d$/, '')}-images`)} } } }
server: { auth: { keyFile: ${join(base, `${name.replace(/-\d$/, '')}.key`)} } }
`,
      );
      return file;
    };
    const sqlite = config('sqlite', 'catalog: { type: sqlite }');
    const pgCatalog = `catalog: { type: postgresql, options: { url: "${postgres.url}", poolSize: 10 } }`;
    const replicas = [config('postgresql-1', pgCatalog), config('postgresql-2', pgCatalog)];
    const start = async (file) => {
      const server = await kit.startServer(file);
      stops.push(server.stop);
      return server;
    };
    const sqliteUser = await kit.addUser(sqlite);
    const pgUser = await kit.addUser(replicas[0]);
    const setups = [
      { label: 'one replica, SQLite', catalog: 'sqlite', servers: [await start(sqlite)], user: sqliteUser },
      {
        label: 'two replicas, PostgreSQL',
        catalog: 'postgresql',
        servers: [await start(replicas[0]), await start(replicas[1])],
        user: pgUser,
      },
    ];
    const figures = await centralFigures({ kit, setups, ...settings, log });
    return {
      settings,
      started: started.toISOString(),
      machine: machine(base),
      postgres: postgres.version,
      loadAtStart,
      loadAtEnd: load(),
      figures,
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    rmSync(base, { recursive: true, force: true });
  }
}

function render(r) {
  const row = (f) => {
    const l = f.list;
    const i = f.ingest;
    const listing = `${l.rps.toFixed(1)} | ${l.p50} / ${l.p99} | ${l.errors}`;
    return `| ${f.label} | ${listing} | ${i.perSecond.toFixed(1)} | ${i.p50.toFixed(0)} / ${i.p99.toFixed(0)} |`;
  };
  const [one, two] = r.figures;
  const s = r.settings;
  const when = r.started.slice(0, 16).replace('T', ', ');
  const loads = `1-minute load ${r.loadAtStart.one.toFixed(2)} at the start, ${r.loadAtEnd.one.toFixed(2)} at the end`;
  const setup = [
    `Written by \`node bench/central.mjs\` (an optional phase, apart from \`npm run bench\`; it rewrites only this`,
    `section) on ${when} UTC. Same machine as above (${r.machine.cores} cores, shared; ${loads}).`,
    `${r.postgres}, Debian's defaults (fsync and synchronous commit on), on loopback; SQLite with`,
    '`synchronous=FULL`. Both setups keep the bits in a file store, so that the difference is the catalog and the',
    `second replica. \`GET /images?limit=${s.images}\` with ${s.images} images: autocannon, ${s.connections}`,
    `connections in all (spread over the replicas), ${s.seconds} s after a ${s.warmup} s warm-up, every request`,
    `signed afresh. Ingest: ${s.uploads} signed streamed uploads of ${Math.round(s.uploadSize / 1024)} KiB by the`,
    `API client, ${s.uploadConcurrency} at a time (round-robin over the replicas).`,
  ];
  const listing = (two.list.rps / one.list.rps).toFixed(2);
  const ingest = (two.ingest.perSecond / one.ingest.perSecond).toFixed(2);
  const reading = [
    `Ratios, two PostgreSQL replicas / one SQLite server: listing ${listing}×, ingest ${ingest}×. How to read`,
    `them: everything here shares ${r.machine.cores} cores (the replicas, PostgreSQL, the load generator and the`,
    'upload client). On PostgreSQL each signed listing costs three round trips to the catalog (the user, the',
    "replay check, the query) where SQLite answers in-process, which the second replica's use of the other core",
    'makes up for; an ingest spends most of its time streaming, hashing and writing the bits, work that two',
    'processes spread over both cores where one Node process mostly uses one. Scaling out — more replicas on',
    'more machines — is what the central deployment is for, and this machine cannot show it. Raw figures:',
    '`$TMPDIR/visor-bench-central.json`; `node bench/central.mjs --report FILE` renders a saved run again.',
  ];
  return [
    '## Central deployment: two API replicas on PostgreSQL vs one on SQLite',
    '',
    setup.join(' '),
    '',
    '| setup | `GET /images` requests/s | latency p50 / p99 (ms) | errors | ingests/s | ' +
      'ingest latency p50 / p99 (ms) |',
    '|---|---:|---:|---:|---:|---:|',
    row(one),
    row(two),
    '',
    reading.join(' '),
  ].join('\n');
}
