// BENCHMARKS.md from one run's results: the machine, the command, every figure beside its peer
// with the ratio, the aims of issue 9 and whether each is met, and — where one is missed — the
// measured reasons. Every number in the file comes from the run; the reasoning around them is
// fixed text written from the profiles (bench/README.md says how they were taken).
import { writeFileSync } from 'node:fs';

const n0 = (v) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(0));
const n1 = (v) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(1));
const n2 = (v) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(2));
const mibps = (v) => `${n0(v)} MiB/s`;
const secs = (v) => (v === undefined ? '–' : v < 10 ? `${n2(v)} s` : `${n1(v)} s`);
const ratio = (v) => `${n2(v)}×`;
const mib = (v) => `${n0(v)} MiB`;
const yes = (met) => (met ? '**met**' : '**missed**');
// Columns of words are left-aligned; the others hold figures.
const textColumn = /^(figure|contestant|what|target|package|phase|step|change)/i;
const table = (head, rows) =>
  [
    `| ${head.join(' | ')} |`,
    `|${head.map((h) => (textColumn.test(h) ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');

export function aims(r) {
  const t = r.transfer;
  const gib = r.settings.sizeMiB / 1024;
  const out = [];
  const add = (id, figure, visor, peer, value, aim, met, note = '') =>
    out.push({ id, figure, visor, peer, value, aim, met, note });
  add(
    'ingest-glance',
    `Ingest ${gib} GiB through the API (curl) vs Glance \`PUT /file\` (curl)`,
    mibps(t.visorCurlIngest.mibps),
    mibps(t.glanceIngest.mibps),
    t.visorCurlIngest.mibps / t.glanceIngest.mibps,
    '≥ 3×',
    t.visorCurlIngest.mibps / t.glanceIngest.mibps >= 3,
  );
  add(
    'ingest-glance-client',
    "… the same with visor's own client (`VisorClient.add`, as `visor add`)",
    mibps(t.visorIngest.mibps),
    mibps(t.glanceIngest.mibps),
    t.visorIngest.mibps / t.glanceIngest.mibps,
    '≥ 3×',
    t.visorIngest.mibps / t.glanceIngest.mibps >= 3,
  );
  add(
    'ingest-cp',
    `Ingest ${gib} GiB through the API (curl) vs \`cp\` of the same file`,
    mibps(t.visorCurlIngest.mibps),
    mibps(t.cp.mibps),
    t.visorCurlIngest.mibps / t.cp.mibps,
    '≥ 0.8×',
    t.visorCurlIngest.mibps / t.cp.mibps >= 0.8,
    `vs \`cp\` + fsync (${mibps(t.cpFsync.mibps)}): ${ratio(t.visorCurlIngest.mibps / t.cpFsync.mibps)}`,
  );
  add(
    'ingest-cp-client',
    "… the same with visor's own client",
    mibps(t.visorIngest.mibps),
    mibps(t.cp.mibps),
    t.visorIngest.mibps / t.cp.mibps,
    '≥ 0.8×',
    t.visorIngest.mibps / t.cp.mibps >= 0.8,
    `vs \`cp\` + fsync: ${ratio(t.visorIngest.mibps / t.cpFsync.mibps)}`,
  );
  add(
    'download',
    `Download ${gib} GiB through the API (curl) vs Glance \`GET /file\` (curl)`,
    mibps(t.visorCurlDownload.mibps),
    mibps(t.glanceDownload.mibps),
    t.visorCurlDownload.mibps / t.glanceDownload.mibps,
    '≥ 1.5×',
    t.visorCurlDownload.mibps / t.glanceDownload.mibps >= 1.5,
  );
  if (t.visorFreshCurlDownload)
    add(
      'download-fresh',
      `… the same from a freshly started \`visor serve\` (curl)`,
      mibps(t.visorFreshCurlDownload.mibps),
      mibps(t.glanceDownload.mibps),
      t.visorFreshCurlDownload.mibps / t.glanceDownload.mibps,
      '≥ 1.5×',
      t.visorFreshCurlDownload.mibps / t.glanceDownload.mibps >= 1.5,
    );
  add(
    'download-client',
    "… the same with visor's own client (`VisorClient.download`)",
    mibps(t.visorDownload.mibps),
    mibps(t.glanceDownload.mibps),
    t.visorDownload.mibps / t.glanceDownload.mibps,
    '≥ 1.5×',
    t.visorDownload.mibps / t.glanceDownload.mibps >= 1.5,
  );
  const p = r.push;
  add(
    'push',
    `Push of a ${gib} GiB catalog image into Glance: \`visor sync\` vs \`curl -T\` (time)`,
    secs(p.visor.seconds),
    secs(p.curl.seconds),
    p.visor.seconds / p.curl.seconds,
    '≤ 1.05×',
    p.visor.seconds / p.curl.seconds <= 1.05,
    `vs \`openstack image save\` + \`openstack image create\` ` +
      `(${secs(p.openstack.seconds)}): ${ratio(p.visor.seconds / p.openstack.seconds)}`,
  );
  const bigGiB = r.big.bytes / 1024 ** 3;
  add(
    'rss',
    `Peak RSS of the \`visor sync\` process pushing ${n0(bigGiB)} GiB`,
    mib(r.big.sync.peakRssMiB),
    '150 MiB (aim)',
    r.big.sync.peakRssMiB / 150,
    '≤ 150 MiB',
    r.big.sync.peakRssMiB <= 150,
    `${mib(p.visor.peakRssMiB)} for ${gib} GiB; ${mib(r.startup.noopSync.peakRssMiB)} for a sync with nothing to do`,
  );
  const pl = r.planner.visor;
  add(
    'plan',
    `Planner, ${r.planner.images.toLocaleString('en')} images × ${r.planner.targets} targets (first pass, total)`,
    secs(pl.firstTotalSeconds),
    '2 s (aim)',
    pl.firstTotalSeconds / 2,
    '≤ 2 s',
    pl.firstTotalSeconds <= 2,
    `warm: ${secs(pl.warmTotalSeconds)}`,
  );
  const a = r.api;
  add(
    'api',
    `\`GET /images\` with ${a.count.toLocaleString('en')} images ` +
      `vs Glance \`GET /v2/images?limit=${a.count}\` (requests/s)`,
    `${n0(a.visor.rps)} req/s`,
    `${n1(a.glance.rps)} req/s`,
    a.visor.rps / a.glance.rps,
    '≥ 10×',
    a.visor.rps / a.glance.rps >= 10,
  );
  return out;
}

export function writeReport(path, r) {
  writeFileSync(path, render(r));
}

function render(r) {
  const m = r.machine;
  const t = r.transfer;
  const p = r.push;
  const h = r.hashing;
  const gib = r.settings.sizeMiB / 1024;
  const list = aims(r);
  const missed = new Set(list.filter((a) => !a.met).map((a) => a.id));
  const durationMin = (Date.parse(r.finished) - Date.parse(r.started)) / 60_000;
  const L = [];
  const w = (...lines) => L.push(...lines);

  w('# visor benchmarks', '');
  w(
    `Written by \`${r.command}\` (bench/run.mjs) on ${r.started.slice(0, 10)}, ${r.started.slice(11, 16)} UTC, ` +
      `in ${n0(durationMin)} minutes. Every figure below comes from that one run; contestants were run ` +
      `interleaved, ${r.settings.repeat}× (ingests), ${r.settings.downloadRepeat ?? r.settings.repeat}× (downloads) ` +
      `and ${r.settings.pushRepeat}× (pushes), and the median is shown. Files: a ${r.settings.sizeMiB} MiB file of ` +
      `random bytes (incompressible), read once beforehand so that every contestant starts from the page cache.`,
    '',
  );

  w('## Machine', '');
  w(
    table(
      ['what', 'value'],
      [
        ['CPU', `${m.cpu} (${m.hashFlags.length ? `with ${m.hashFlags.join(', ')}` : 'no SHA extensions'})`],
        ['cores', String(m.cores)],
        ['RAM', `${n1(m.ramGiB)} GiB`],
        ['kernel', m.kernel],
        ['OS', `${m.os} (virtualisation: ${m.virtualization})`],
        ['node', m.node],
        ['disk', m.disk],
      ],
    ),
    '',
  );
  w(
    `**Load.** The machine is shared with other engineers' test suites. The run waited for a 1-minute load average ` +
      `below ${r.settings.maxLoad} (for up to ${r.settings.waitMinutes} minutes) ` +
      `and ${
        r.quiet.quiet
          ? `started at ${n2(r.quiet.one)}`
          : `**never got it** (load ${n2(r.quiet.one)} when it ` +
            `gave up waiting): the figures were taken on a busy machine and are lower and noisier than on a quiet one`
      }. Load (1/5/15 min) at each phase:`,
    '',
  );
  w(
    table(
      ['phase', '1 min', '5 min', '15 min', 'busiest processes then'],
      r.loads.map((l) => [l.phase, n2(l.one), n2(l.five), n2(l.fifteen), l.top.slice(0, 3).join(', ')]),
    ),
    '',
  );
  w(
    `Loads read after the start include the bench's own work (a transfer keeps both cores busy: server, client, ` +
      `Glance), so they say little about neighbours by themselves; the last column names the busiest processes at ` +
      `that moment (visor's and the bench's own are \`node\`, Glance's \`glance-api\`). Where neighbours did run, ` +
      `the CPU-seconds-per-GiB columns are the more reliable figures: ` +
      `they do not depend on how long a process waited for a core.`,
    '',
  );

  w('## Peers', '');
  w(
    `- **Glance** ${r.peer.glance} and **Keystone** ${r.peer.keystone} from Debian packages, ` +
      `on loopback (test/peers/openstack, started by the bench when not running): one glance-api worker process, ` +
      `filesystem store on the same disk, SQLite database, Keystone tokens checked by keystonemiddleware (cached). ` +
      `Glance computes md5 and sha512 (its \`os_hash_algo\`) of every upload, in Python; it does not fsync.`,
  );
  w(
    `- **curl** ${r.peer.curl}: \`curl -T\` uploads (Content-Length, no client hashing), \`curl -o /dev/null\` ` +
      `downloads, for Glance and — to measure visor's server alone — for visor too (signed headers, ` +
      `the body's sha256 signed up front from an earlier upload, not hashed by the client).`,
  );
  w(
    `- **openstack** CLI (python3-openstackclient ${r.peer.openstackclient}), ` +
      `with the environment of the peer's admin-openrc.sh.`,
  );
  w(
    '- **`cp`** of the source file on the same filesystem; ' +
      '**`cp` + fsync** also fsyncs the copy (visor fsyncs every upload before it answers).',
  );
  w(
    '- **visor**: `visor serve` (this build, `dist/`) in its own process with its default configuration: ' +
      'SQLite catalog, file store with fsync, signed requests, a log line per request. `visor sync` runs as the ' +
      "CLI, a process of its own, timed from start to exit; its peak RSS is the kernel's (GNU time, `ru_maxrss`).",
    '',
  );

  w('## Figures against the aims', '');
  w(
    table(
      ['figure', 'visor', 'peer', 'ratio', 'aim', 'result', 'also'],
      list
        .map((a) => [a.figure, a.visor, a.peer, ratio(a.value), a.aim, yes(a.met), a.note])
        .map((row, i) =>
          list[i].id === 'rss' || list[i].id === 'plan' ? [row[0], row[1], row[2], '', row[4], row[5], row[6]] : row,
        ),
    ),
    '',
  );
  w(
    `Ratios are visor ÷ peer (throughputs and requests/s: higher is better for visor; the push compares times: ` +
      `lower is better for visor). ${list.filter((a) => a.met).length} of ${list.length} met.`,
    '',
  );

  w('## Ingest and download', '');
  w(
    `${gib} GiB; CPU seconds per GiB are those of the serving process (visor serve; ` +
      `the glance-api processes) and, for visor's own client, of the client process.`,
    '',
  );
  const row = (name, s, server, client) => [
    name,
    mibps(s.mibps),
    secs(s.seconds),
    s.runs.map((x) => n2(x)).join(' / '),
    server ? `${n2(s.serverCpuPerGiB)} (${n2(s.serverSysPerGiB)})` : '',
    client ? n2(s.clientCpuPerGiB) : '',
  ];
  w(
    table(
      [
        'contestant',
        'throughput',
        'time (median)',
        'runs (s)',
        'server CPU s/GiB (of which kernel)',
        'client CPU s/GiB',
      ],
      [
        [...row('`cp`', t.cp, true).slice(0, 4), `${n2(t.cp.serverCpuPerGiB)} (cp)`, ''],
        [...row('`cp` + fsync', t.cpFsync, true).slice(0, 4), `${n2(t.cpFsync.serverCpuPerGiB)} (cp)`, ''],
        row('visor API ingest, visor client', t.visorIngest, true, true),
        row('visor API ingest, curl', t.visorCurlIngest, true),
        row('Glance `POST` record + `PUT /file`, curl', t.glanceIngest, true),
        row('visor API download, visor client', t.visorDownload, true, true),
        row('visor API download, curl', t.visorCurlDownload, true),
        ...(t.visorFreshCurlDownload
          ? [row('visor API download, curl, freshly started server', t.visorFreshCurlDownload, true)]
          : []),
        row('Glance `GET /file`, curl', t.glanceDownload, true),
      ],
    ),
    '',
  );
  w(`Peak RSS of \`visor serve\` during the ingests: ${mib(t.ingestPeakRssMiB.visor)}.`, '');

  w('### What hashing costs on this CPU', '');
  const hashCost = (a) => 1024 / a;
  const three = hashCost(h.node.md5) + hashCost(h.node.sha256) + hashCost(h.node.sha512);
  const glanceTwo = hashCost(h.python.md5) + hashCost(h.python.sha512);
  w(
    table(
      ['what', 'MiB/s on one core', 'CPU s/GiB'],
      [
        ['md5 (Node/OpenSSL)', n0(h.node.md5), n2(hashCost(h.node.md5))],
        ['sha256 (Node/OpenSSL)', n0(h.node.sha256), n2(hashCost(h.node.sha256))],
        ['sha512 (Node/OpenSSL)', n0(h.node.sha512), n2(hashCost(h.node.sha512))],
        ['md5 + sha256 + sha512 (what visor stores)', n0(1024 / three), n2(three)],
        ['md5 (Python hashlib, Glance)', n0(h.python.md5), n2(hashCost(h.python.md5))],
        ['sha512 (Python hashlib, Glance)', n0(h.python.sha512), n2(hashCost(h.python.sha512))],
        ['md5 + sha512 (what Glance computes)', n0(1024 / glanceTwo), n2(glanceTwo)],
        ['DigestStream (the three, on the event loop)', n0(h.digestStream.mibps), n2(h.digestStream.cpuPerGiB)],
        ...(h.parallelDigestStream
          ? [
              [
                'ParallelDigestStream (the three, on 2 worker threads)',
                n0(h.parallelDigestStream.mibps),
                n2(h.parallelDigestStream.cpuPerGiB),
              ],
            ]
          : []),
      ],
    ),
    '',
  );

  w('## Push into Glance', '');
  w(
    table(
      ['contestant', 'time (median)', 'runs (s)', 'throughput', 'peak RSS'],
      [
        [
          '`visor sync` (whole process)',
          secs(p.visor.seconds),
          p.visor.runs.map(n2).join(' / '),
          mibps(p.visor.mibps),
          mib(p.visor.peakRssMiB),
        ],
        ['… of which the sync run (plan, upload, verify; from the run record)', secs(p.visor.runSeconds), '', '', ''],
        [
          '… of which the upload action (create record, stream, wait until active, verify)',
          secs(p.visor.actionSeconds),
          '',
          '',
          '',
        ],
        [
          'token + record + `curl -T` (one shell script)',
          secs(p.curl.seconds),
          p.curl.runs.map(n2).join(' / '),
          mibps(p.curl.mibps),
          '',
        ],
        [
          '`openstack image save` + `openstack image create`',
          secs(p.openstack.seconds),
          p.openstack.runs.map(n2).join(' / '),
          mibps(p.openstack.mibps),
          mib(p.openstack.peakRssMiB),
        ],
        ['… `openstack image save`', secs(p.openstack.saveSeconds), '', '', ''],
        ['… `openstack image create --file`', secs(p.openstack.createSeconds), '', '', ''],
      ],
    ),
    '',
  );
  const s = r.startup;
  w('### A sync that moves nothing', '');
  w(
    table(
      ['what', 'time', 'peak RSS'],
      [
        ['`node -e 0`', secs(s.bareNode.seconds), mib(s.bareNode.peakRssMiB)],
        ['`visor --version`', secs(s.version.seconds), mib(s.version.peakRssMiB)],
        ['`visor sync` with nothing to do (whole process)', secs(s.noopSync.seconds), mib(s.noopSync.peakRssMiB)],
        ['… of which the sync run (Keystone token, listings, plan)', secs(s.noopSync.runSeconds), ''],
      ],
    ),
    '',
  );
  w('Packages, each imported alone in a fresh process:', '');
  w(
    table(
      ['package', 'import time', 'RSS added', 'loaded by `visor sync`'],
      s.packages.map((x) => [`\`${x.name}\``, `${n0(x.ms)} ms`, mib(x.rssMiB), x.loadedBySync ? 'yes' : 'no']),
    ),
    '',
  );

  w(`## Peak RSS of a ${n0(r.big.bytes / 1024 ** 3)} GiB sync`, '');
  w(
    table(
      ['what', 'value'],
      [
        [
          `ingest of ${n0(r.big.bytes / 1024 ** 3)} GiB through the API (visor client)`,
          `${secs(r.big.ingestSeconds)}, ${mibps(r.big.ingestMibps)}; ` +
            `\`visor serve\` peak RSS ${mib(r.big.serverPeakRssMiB)}`,
        ],
        [`\`visor sync\` of it into Glance`, `${secs(r.big.sync.seconds)}, ${mibps(r.big.sync.mibps)}`],
        ['peak RSS of the `visor sync` process', mib(r.big.sync.peakRssMiB)],
        [`the same for the ${gib} GiB push`, mib(p.visor.peakRssMiB)],
        ['the same for a sync with nothing to do', mib(s.noopSync.peakRssMiB)],
      ],
    ),
    '',
  );

  const pl = r.planner;
  w(`## Planner: ${pl.images.toLocaleString('en')} images × ${pl.targets} targets`, '');
  w(
    'The pure planner (agent/sync/planner.ts) on a generated catalog and generated listings: each target has its ' +
      'own policy (tags; name globs with a naming template and a visibility mapping; architectures with ' +
      'delete-after-grace; everything with import and adopt) and a listing where, per 1,000 selected images, ' +
      '5 are missing, 5 renamed, 2 have new content and 2 leave a pending leftover, plus copies of images gone from ' +
      "the catalog and the cloud's own images. First pass = what one `visor " +
      'sync` process pays (code not yet optimised); warm = median of 3 more.',
    '',
  );
  w(
    table(
      ['target', 'selected', 'observed', 'actions', 'first pass', 'warm'],
      pl.visor.perTarget
        .map((x) => [
          x.name,
          x.selected.toLocaleString('en'),
          x.observed.toLocaleString('en'),
          `${x.actions} (${Object.entries(x.counts)
            .map(([k, v]) => `${v} ${k}`)
            .join(', ')})`,
          secs(x.firstSeconds),
          secs(x.warmSeconds),
        ])
        .concat([
          [
            '**total**',
            '',
            '',
            '',
            `**${secs(pl.visor.firstTotalSeconds)}**`,
            `**${secs(pl.visor.warmTotalSeconds)}**`,
          ],
        ]),
    ),
    '',
  );

  const a = r.api;
  w(`## \`GET /images\` under load`, '');
  w(
    `autocannon, ${a.connections} connections, ${a.seconds} s measured after a 2 s warm-up, in the bench process; ` +
      `visor requests signed per request (fresh date and nonce: a signature is accepted once), Glance requests with ` +
      `one X-Auth-Token. ${a.count.toLocaleString('en')} images registered ` +
      `in each (metadata only: visor \`locked\`, Glance \`queued\`).`,
    '',
  );
  const arow = (name, x) => [
    name,
    n1(x.rps),
    String(x.requests),
    `${n0(x.latencyMs.p50)} / ${n0(x.latencyMs.p90)} / ${n0(x.latencyMs.p99)} / ${n0(x.latencyMs.max)}`,
    `${n0(x.bytesPerResponse / 1024)} KiB`,
    String(x.errors + x.non2xx),
  ];
  w(
    table(
      ['contestant', 'requests/s', 'requests', 'latency p50 / p90 / p99 / max (ms)', 'response', 'errors'],
      [
        arow(`visor \`GET /images?limit=${a.count}\` (brief)`, a.visor),
        arow(`visor \`GET /images/detail?limit=${a.count}\``, a.visorDetail),
        arow(`Glance \`GET /v2/images?limit=${a.count}\``, a.glance),
      ],
    ),
    '',
  );
  w(
    `Glance's records are fuller than visor's brief view ` +
      `(${n0(a.glance.bytesPerResponse / a.count)} vs ${n0(a.visor.bytesPerResponse / a.count)} bytes per image); ` +
      `visor's detail view (${n0(a.visorDetail.bytesPerResponse / a.count)} bytes per image) ` +
      `is the closer match in size and runs at ${ratio(a.visorDetail.rps / a.glance.rps)} Glance.`,
    '',
  );

  w('## Why the missed aims are missed', '');
  if (missed.size === 0) w('Every aim is met.', '');
  const cores = m.cores;
  if (
    missed.has('ingest-cp') ||
    missed.has('ingest-glance') ||
    missed.has('ingest-cp-client') ||
    missed.has('ingest-glance-client')
  ) {
    const ceiling = (cores * 1024) / three;
    w('### Ingest', '');
    w(
      `- **The checksums, not the I/O, bound the ingest.** visor computes md5, sha256 and sha512 of every upload ` +
        `(sha256 is the content marker, md5 and sha512 are what Glance reports and what pushes are verified ` +
        `against). On this CPU one core hashes them ` +
        `at ${mibps(h.node.md5)}, ${mibps(h.node.sha256)} and ${mibps(h.node.sha512)}: **${n2(three)} CPU-seconds ` +
        `per GiB** for the three. \`cp\` needs ${n2(t.cp.clientCpuPerGiB)} (it copies within the page cache ` +
        `at ${mibps(t.cp.mibps)}). With ${cores} cores and nothing else to do, three checksums allow at ` +
        `most ${cores} ÷ ${n2(three)} s/GiB = **${mibps(ceiling)}** ` +
        `— ${ratio(ceiling / t.cp.mibps)} \`cp\`, ${ratio(ceiling / t.cpFsync.mibps)} \`cp\` + fsync. ` +
        `≥ 0.8× \`cp\` cannot be reached on this machine by any server that computes these checksums.`,
    );
    w(
      `- **What the server spends.** Measured: ${n2(t.visorCurlIngest.serverCpuPerGiB)} CPU-s/GiB for visor's ` +
        `server (curl client) against ${n2(t.glanceIngest.serverCpuPerGiB)} for Glance. ` +
        `The hashing is ${n2(three)} of visor's (${n2(h.parallelDigestStream?.cpuPerGiB ?? three)} through ` +
        `ParallelDigestStream, which also copies every byte once into the ring the workers read); the rest is the ` +
        `HTTP receive, the file writes and the fsync (${n2(t.visorCurlIngest.serverSysPerGiB)} CPU-s/GiB of the ` +
        `server's time is in the kernel: socket reads, page-cache writes). Glance computes two checksums, ` +
        `not three (${n2(glanceTwo)} CPU-s/GiB in Python's hashlib), and does not fsync.`,
    );
    w(
      `- **3× Glance** would be ${mibps(3 * t.glanceIngest.mibps)}, i.e. ` +
        `at most ${n2((cores * 1024) / (3 * t.glanceIngest.mibps))} CPU-s/GiB for everything on ${cores} cores — ` +
        `less than the three checksums alone (${n2(three)}). Spreading the hashing over worker threads ` +
        `(ParallelDigestStream, below) turns visor's ingest from one core hashing into both cores working; ` +
        `beyond that only fewer or cheaper checksums (or more cores) raise it.`,
    );
    w(
      `- **visor's own client** adds its own work on the ` +
        `same ${cores} cores: ${n2(t.visorIngest.clientCpuPerGiB)} CPU-s/GiB in the client process (its sha256 of ` +
        `what it sends, ${n2(hashCost(h.node.sha256))} s/GiB, for the end-to-end check — the server's sha256 must ` +
        `equal it — plus Node's HTTP client and stream machinery), which is why it ingests ` +
        `at ${mibps(t.visorIngest.mibps)} where curl reaches ${mibps(t.visorCurlIngest.mibps)}.`,
      '',
    );
  }
  if (missed.has('download') || missed.has('download-fresh') || missed.has('download-client')) {
    w('### Download', '');
    const dl = t.visorCurlDownload;
    const fresh = t.visorFreshCurlDownload;
    const perChunk = (cpu) => n0((cpu / 16384) * 1e6);
    const regime = (after, fresh) => after && fresh && after.serverCpuPerGiB > 1.5 * fresh.serverCpuPerGiB;
    const seen = [
      ['this build', dl, fresh],
      ['the build before these changes', t.beforeCurlDownload, t.beforeFreshCurlDownload],
    ].filter(([, a, f]) => regime(a, f));
    const trace =
      'Traced while preparing this run (`--trace-gc`, `--trace-incremental-marking` on `visor serve`): ' +
      'after large ingests V8 can end up re-starting incremental marking of the whole old generation every ~70 ms ' +
      '("allocation limit", with only ~24 MB of old-generation headroom), each cycle ~40 ms of marking — ' +
      'about half a core of garbage collection while it streams; a fresh server downloading the same file only ' +
      'triggers scavenges. Whether it happens depends on how the heap was ' +
      'sized during the ingests; it is the same download code in both builds.';
    if (seen.length > 0) {
      w(
        `- **A server that has just taken in gigabytes can be much slower at serving.** The downloads were measured ` +
          `twice: on the \`visor serve\` that had just ingested ${2 * r.settings.repeat} GiB, and on one started ` +
          `afresh on the same data. ${seen
            .map(
              ([name, a, f]) =>
                `With ${name}: ${n2(a.serverCpuPerGiB)} CPU-s/GiB ` +
                `after the ingests (${mibps(a.mibps)}) against ${n2(f.serverCpuPerGiB)} fresh (${mibps(f.mibps)}); ` +
                `the difference is user time, not kernel (${n2(a.serverSysPerGiB)} vs ${n2(f.serverSysPerGiB)}).`,
            )
            .join(' ')} ${trace}`,
      );
    } else if (fresh) {
      w(
        `- **In this run the ingests did not slow the server down**: ${n2(dl.serverCpuPerGiB)} CPU-s/GiB after ` +
          `them, ${n2(fresh.serverCpuPerGiB)} on a freshly started server. In runs while preparing this one, ` +
          `a server that had ingested gigabytes sometimes needed 3–5 CPU-s/GiB for the same download. ${trace}`,
      );
    }
    if (fresh)
      w(
        `- **Even fresh, visor spends more CPU per byte than Glance**: ${perChunk(fresh.serverCpuPerGiB)} µs per 64 ` +
          `KiB chunk (${perChunk(fresh.serverSysPerGiB)} µs of it in the kernel: a thread-pool read, ` +
          `then a socket write, per chunk) against Glance's ${perChunk(t.glanceDownload.serverCpuPerGiB)} µs ` +
          `(${perChunk(t.glanceDownload.serverSysPerGiB)} µs in the kernel) for the same 64 KiB read-and-send. ` +
          `Neither hashes on the way out, so there is no work in Glance that visor could skip: 1.5× Glance would ` +
          `need less than ${n2(t.glanceDownload.serverCpuPerGiB / 1.5)} CPU-s/GiB, ` +
          `below what Glance itself needs for the copy.`,
      );
    if (missed.has('download-client'))
      w(
        `- **visor's own client** (axios) receives at ${mibps(t.visorDownload.mibps)}, ` +
          `spending ${n2(t.visorDownload.clientCpuPerGiB)} CPU-s/GiB in the client process: Node's HTTP client ` +
          `hands the body over in 64 KiB Buffers, and a profile of \`VisorClient.download\` taken while preparing ` +
          `this run is mostly garbage collection and \`socketOnData\`; client and server share the ${cores} cores.`,
      );
    w('');
  }
  if (missed.has('push')) {
    const startupSeconds = p.visor.seconds - p.visor.runSeconds;
    w('### Push', '');
    const keepsUp =
      p.visor.actionSeconds <= 1.05 * p.curl.seconds
        ? 'keeps up with curl'
        : `is ${n2(p.visor.actionSeconds / p.curl.seconds)}× curl's whole push`;
    w(
      `- **The upload itself ${keepsUp}**: the sync's upload action (create the record, stream the bytes through ` +
        'a sha256 check, wait until active, verify md5 and sha512 against what Glance reports) took ' +
        `${secs(p.visor.actionSeconds)}; curl's whole push (token, record, upload) took ${secs(p.curl.seconds)}.`,
    );
    w(
      `- **The process around it does not**: \`visor sync\` ran ${secs(p.visor.seconds)} in all, ` +
        `so ${secs(startupSeconds)} went to starting and stopping the process (loading modules, reading the config, ` +
        `building every configured cloud's driver) — a sync with nothing to do takes ${secs(s.noopSync.seconds)}, ` +
        `of which its run is ${secs(s.noopSync.runSeconds)}. ${pkgSentence(s.packages)}`,
    );
    w(
      `- On ${cores} cores the push also shares the CPU with Glance, which hashes (md5 + sha512) ` +
        `what it receives; visor now hashes only sha256 on the way out (it used to compute all three).`,
      '',
    );
  }
  if (missed.has('rss')) {
    w('### Peak RSS', '');
    w(
      `- **Memory does not grow with the image**: the ${n0(r.big.bytes / 1024 ** 3)} GiB push peaked ` +
        `at ${mib(r.big.sync.peakRssMiB)}, the ${gib} GiB push at ${mib(p.visor.peakRssMiB)}, a sync that moves ` +
        `nothing at ${mib(s.noopSync.peakRssMiB)}. Streaming adds a ` +
        `few MiB of buffers; the rest is the baseline of the process.`,
    );
    w(
      `- **The baseline is code**: \`node -e 0\` is ${mib(s.bareNode.peakRssMiB)}, ` +
        `\`visor --version\` ${mib(s.version.peakRssMiB)}. ${pkgSentence(s.packages)}`,
      '',
    );
  }
  if (missed.has('plan')) {
    w('### Planner', '');
    w(
      `- The first pass took ${secs(pl.visor.firstTotalSeconds)}, warm ${secs(pl.visor.warmTotalSeconds)}: ` +
        `per image the planner builds the desired image (a copy with the rendered name) for every target, ` +
        `and garbage collection of those copies is a large share at this size. See the per-target table.`,
      '',
    );
  }
  if (missed.has('api')) {
    w('### `GET /images`', '');
    w(`- visor answered ${n0(a.visor.rps)} requests/s against Glance's ${n1(a.glance.rps)}.`, '');
  }

  if (pl.before || r.transfer.beforeIngest) w(...beforeAfter(r));
  w('## Reproduce', '');
  w(
    '```sh',
    'npm run bench                       # builds, then runs bench/run.mjs and rewrites BENCHMARKS.md',
    'BENCH_SIZE_MIB=128 BENCH_REPEAT=1 BENCH_PUSH_REPEAT=1 BENCH_PLANNER_IMAGES=10000 \\',
    '  BENCH_API_IMAGES=100 BENCH_MAX_LOAD=99 BENCH_OUTPUT=/tmp/b.md npm run bench   # a quick try',
    '```',
    '',
  );
  w(
    'Needs root on Debian 12 the first time (the Keystone + Glance peer installs its packages), about 16 GiB free ' +
      'under $TMPDIR (the bench checks), and ~10 minutes. ' +
      'The raw figures of the last run are in $TMPDIR/visor-bench-results.json.',
    '',
  );
  return `${L.join('\n')}\n`;
}

function pkgSentence(packages) {
  const loaded = packages.filter((x) => x.loadedBySync).sort((a, b) => b.rssMiB - a.rssMiB);
  if (loaded.length === 0) return '';
  const [top] = loaded;
  const lazy = packages.filter((x) => !x.loadedBySync);
  const loads = loaded.map((x) => `\`${x.name}\` (${n0(x.ms)} ms, ${n0(x.rssMiB)} MiB on its own)`).join(', ');
  const lazily =
    lazy.length > 0
      ? `; ${lazy.map((x) => `\`${x.name}\``).join(', ')} ${lazy.length === 1 ? 'is' : 'are'} ` +
        'imported only when a configured cloud, store or catalog (or the daemon) needs them'
      : '';
  const ec2 =
    top.name === '@aws-sdk/client-ec2'
      ? ' The EC2 client is imported at start-up by the eucalyptus adapter even when no Eucalyptus cloud is configured.'
      : '';
  return `Of the packages measured, the sync command loads ${loads}${lazily}.${ec2}`;
}

function beforeAfter(r) {
  const t = r.transfer;
  const p = r.push;
  const pl = r.planner;
  const L = ['## Changes made for these figures, before and after', ''];
  L.push(
    `"Before" (\`BENCH_BEFORE_DIST=${r.settings.beforeDist}\`) is the build of commit 3f8e7b8, the last one landed ` +
      `before these changes; "after" is \`dist/\`, which also holds the bad-input, fault and crash fixes landed ` +
      `since (on the measured paths: the API's replay cache is swept at most once a second, ` +
      `upload bodies have an idle timeout). Both were measured in the same run, interleaved round by round.`,
    '',
  );
  L.push(
    '1. **File and s3 stores hash on worker threads** (core/store/file/file-store.ts, core/store/s3/s3-store.ts): ' +
      '`put` uses `ParallelDigestStream` instead of `DigestStream`, so md5, ' +
      'sha256 and sha512 run side by side on two threads instead of one after the other on the event loop.',
    '2. **ParallelDigestStream keeps a process alive exactly while it hashes** (core/transfer/parallel-digest.ts): ' +
      "its workers were unref'd before their message listener was added, which refs them again, so any process that " +
      "had hashed once never exited (a CLI that stored a file would hang); unref'd in the right place, " +
      'a process whose only pending work is a digest would instead exit before the digest arrived. The workers are ' +
      "now ref'd while a stream uses them and unref'd when none does, and a dead worker fails the " +
      'streams in flight instead of leaving them waiting (test: core/transfer/digest.test.ts).',
    '3. **The Glance push hashes only sha256** (adapters/glance/create-helpers.ts `openVerified`): ' +
      'it used a `DigestStream` computing md5 + sha256 + sha512 of every pushed byte but checked only ' +
      "sha256 (md5 and sha512 are Glance's to compute, and are verified on what Glance reports).",
    '4. **The planner is linear** (agent/sync/planner.ts, agent/sync/desired.ts): `catalog.some(id)` for every copy ' +
      'of an image that left the catalog made it quadratic (a set now); ' +
      'name globs were compiled to a RegExp for every image, now once per plan (`selectorFor`).',
    '5. **One-shot commands load only what their configuration needs** (adapters/eucalyptus/index.ts, ' +
      'adapters/nimbus/index.ts, agent/cli/commands/sync-actions.ts): the eucalyptus and nimbus plugins imported ' +
      "their drivers — and with them the AWS SDK's EC2 and S3 clients — whenever the plugins were registered, i.e. " +
      'in every process; `visor sync` imported the daemon and with it the HTTP server framework. ' +
      'Drivers are now imported when a cloud of theirs is built, the daemon when `visor agent` runs.',
    '',
    "Tried and left out: reading files in 1 MiB chunks in the file store's `get` (instead of 64 KiB). " +
      'On a fresh server it halved the kernel time of a download (0.5 instead of 0.9 CPU-s/GiB), ' +
      'but in the garbage-collection regime described under Download it cost more (3 CPU-s/GiB against 0.5–0.7 ' +
      'with 64 KiB chunks, in the runs traced while preparing this one); left out until that regime is understood.',
    '',
  );
  const rows = [];
  const rel = (before, after, higherIsBetter) => {
    if (!before || !after) return '';
    const gain = higherIsBetter ? after / before : before / after;
    return gain >= 1 ? `${ratio(gain)} faster` : `${ratio(1 / gain)} slower`;
  };
  if (t.beforeIngest) {
    rows.push([
      'ingest, visor client',
      mibps(t.beforeIngest.mibps),
      mibps(t.visorIngest.mibps),
      rel(t.beforeIngest.mibps, t.visorIngest.mibps, true),
    ]);
    rows.push([
      'ingest, curl (server alone)',
      `${mibps(t.beforeCurlIngest.mibps)}, ${n2(t.beforeCurlIngest.serverCpuPerGiB)} CPU-s/GiB`,
      `${mibps(t.visorCurlIngest.mibps)}, ${n2(t.visorCurlIngest.serverCpuPerGiB)} CPU-s/GiB`,
      rel(t.beforeCurlIngest.mibps, t.visorCurlIngest.mibps, true),
    ]);
    rows.push([
      '`visor serve` peak RSS during ingest',
      mib(t.ingestPeakRssMiB.before),
      mib(t.ingestPeakRssMiB.visor),
      '',
    ]);
    rows.push([
      'download, visor client, after the ingests',
      mibps(t.beforeDownload.mibps),
      mibps(t.visorDownload.mibps),
      `${rel(t.beforeDownload.mibps, t.visorDownload.mibps, true)} — same download code; see Download`,
    ]);
    if (t.beforeFreshCurlDownload)
      rows.push([
        'download, curl, fresh server',
        `${mibps(t.beforeFreshCurlDownload.mibps)}, ${n2(t.beforeFreshCurlDownload.serverCpuPerGiB)} CPU-s/GiB`,
        `${mibps(t.visorFreshCurlDownload.mibps)}, ${n2(t.visorFreshCurlDownload.serverCpuPerGiB)} CPU-s/GiB`,
        `${rel(t.beforeFreshCurlDownload.mibps, t.visorFreshCurlDownload.mibps, true)} — ` +
          `same code in both builds: run-to-run variation`,
      ]);
    rows.push([
      'download, curl, after the ingests',
      `${mibps(t.beforeCurlDownload.mibps)}, ${n2(t.beforeCurlDownload.serverCpuPerGiB)} CPU-s/GiB`,
      `${mibps(t.visorCurlDownload.mibps)}, ${n2(t.visorCurlDownload.serverCpuPerGiB)} CPU-s/GiB`,
      `${rel(t.beforeCurlDownload.mibps, t.visorCurlDownload.mibps, true)} — same download code; see Download`,
    ]);
  }
  if (p.before) {
    rows.push([
      'push, `visor sync` whole process',
      secs(p.before.seconds),
      secs(p.visor.seconds),
      rel(p.before.seconds, p.visor.seconds, false),
    ]);
    rows.push([
      'push, upload action',
      secs(p.before.actionSeconds),
      secs(p.visor.actionSeconds),
      rel(p.before.actionSeconds, p.visor.actionSeconds, false),
    ]);
    rows.push(['push, peak RSS of `visor sync`', mib(p.before.peakRssMiB), mib(p.visor.peakRssMiB), '']);
  }
  if (pl.before)
    rows.push([
      `planner, ${pl.images.toLocaleString('en')} × ${pl.targets}, first pass`,
      secs(pl.before.firstTotalSeconds),
      secs(pl.visor.firstTotalSeconds),
      rel(pl.before.firstTotalSeconds, pl.visor.firstTotalSeconds, false),
    ]);
  L.push(table(['figure', 'before', 'after', 'change'], rows), '');
  if (pl.before)
    L.push(
      `Planner before, per target (first ` +
        `pass): ${pl.before.perTarget.map((x) => `${x.name} ${secs(x.firstSeconds)}`).join(', ')}.`,
      '',
    );
  L.push(
    'Tests run after the changes: `VISOR_TEST_SKIP_BUILD=1 npx vitest run test/store test/api core/transfer ' +
      'agent/sync/planner.test.ts test/adapters/glance` (store contract for file, s3 against the real Swift s3api ' +
      "peer, http; the API; both digest streams; the planner's properties; " +
      'the Glance adapter against the real Glance).',
    '',
  );
  return L;
}

// Re-renders a report from saved results: node bench/report.mjs results.json out.md
if (process.argv[1] === new URL(import.meta.url).pathname) {
  const { readFileSync } = await import('node:fs');
  writeReport(process.argv[3] ?? 'BENCHMARKS.md', JSON.parse(readFileSync(process.argv[2], 'utf8')));
}
