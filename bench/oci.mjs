// `node bench/oci.mjs` (after `npm run build`): the OCI row of BENCHMARKS.md. A docker-registry
// (Debian's distribution 2.8) on loopback, a file of BENCH_SIZE_MIB (default 1024) random bytes;
// publish (visor's OciClient.pushBlob, chunked as the oci target does) vs `curl -T` of the same
// blob upload, and pull (OciClient.getBlob, digest verified while streaming) vs `curl` of the
// blob. Each contestant runs in its own process; the median of BENCH_REPEAT runs (default 3).
// The section is written into BENCHMARKS.md between the oci markers.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const repeat = Number(process.env.BENCH_REPEAT ?? 3);
const base = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'visor-bench-oci-'));
const log = (m) => process.stderr.write(`[bench oci] ${m}\n`);

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
writeFileSync(
  join(base, 'config.yml'),
  `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(base, 'data')}\n` +
    `  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n`,
);
const registry = spawn('docker-registry', ['serve', join(base, 'config.yml')], { stdio: 'ignore' });
const url = `http://127.0.0.1:${port}`;
try {
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/v2/`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i > 100) throw new Error('docker-registry did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const file = join(base, 'disk.img');
  log(`writing ${sizeMiB} MiB of random bytes`);
  execFileSync('sh', ['-c', `head -c ${sizeMiB}M /dev/urandom > ${file}`]);
  const digest = `sha256:${execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]}`;
  const size = sizeMiB * 1024 * 1024;

  // One contestant in a child process: prints {seconds, maxRssMiB}.
  const child = (code) => {
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', cwd: repoRoot });
    if (out.status !== 0) throw new Error(out.stderr);
    return JSON.parse(out.stdout.trim().split('\n').pop());
  };
  const client = `import { OciClient } from './dist/core/wire/oci/client.js';
    import { createReadStream } from 'node:fs';
    const c = new OciClient({ registry: '127.0.0.1:${port}', plainHttp: true });`;
  const report = `const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));`;
  const visorPush = (repo) =>
    child(`${client}
      const t0 = process.hrtime.bigint();
      const open = async (r) => createReadStream('${file}', r ? { start: r.start, end: r.end } : {});
      const how = await c.pushBlob('${repo}', { digest: '${digest}', size: ${size}, open });
      if (how !== 'uploaded') throw new Error(how);
      ${report} await c.close();`);
  const visorPull = (repo) =>
    child(`${client}
      const t0 = process.hrtime.bigint();
      const { stream } = await c.getBlob('${repo}', { digest: '${digest}', size: ${size} });
      for await (const _ of stream);
      ${report} await c.close();`);
  const curlPush = (repo) => {
    const t0 = process.hrtime.bigint();
    const start = ['-sf', '-D', '-', '-o', '/dev/null', '-X', 'POST', `${url}/v2/${repo}/blobs/uploads/`];
    const headers = execFileSync('curl', start, { encoding: 'utf8' });
    const location = new URL(/^location: (.*)$/im.exec(headers)[1].trim(), url);
    location.searchParams.set('digest', digest);
    execFileSync('curl', ['-sf', '-T', file, '-H', 'Content-Type: application/octet-stream', location.href]);
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  };
  const curlPull = (repo) => {
    const t0 = process.hrtime.bigint();
    execFileSync('curl', ['-sf', '-o', '/dev/null', `${url}/v2/${repo}/blobs/${digest}`]);
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  };

  const curlPullHash = (repo) => {
    const t0 = process.hrtime.bigint();
    const command = `curl -sf ${url}/v2/${repo}/blobs/${digest} | sha256sum`;
    const got = execFileSync('sh', ['-c', command], { encoding: 'utf8' });
    if (`sha256:${got.split(' ')[0]}` !== digest) throw new Error('curl | sha256sum: digest mismatch');
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
  };

  const runs = { visorPush: [], curlPush: [], visorPull: [], curlPull: [], curlPullHash: [] };
  for (let i = 0; i < repeat; i++) {
    log(`round ${i + 1} of ${repeat}`);
    runs.visorPush.push(visorPush(`bench/visor-${i}`));
    runs.curlPush.push(curlPush(`bench/curl-${i}`));
    runs.visorPull.push(visorPull(`bench/visor-${i}`));
    runs.curlPull.push(curlPull(`bench/curl-${i}`));
    runs.curlPullHash.push(curlPullHash(`bench/curl-${i}`));
  }
  const median = (list) => [...list].sort((a, b) => a.seconds - b.seconds)[Math.floor(list.length / 2)];
  const mibs = (r) => `${(sizeMiB / r.seconds).toFixed(0)} MiB/s`;
  const row = (what, ours, theirs) => {
    const a = median(ours);
    const b = median(theirs);
    const rss = Math.max(...ours.map((r) => r.maxRssMiB)).toFixed(0);
    const times = ours.map((r) => r.seconds.toFixed(2)).join(' / ');
    return (
      `| ${what} | ${mibs(a)} (${a.seconds.toFixed(2)} s) | ${mibs(b)} (${b.seconds.toFixed(2)} s) | ` +
      `${(b.seconds / a.seconds).toFixed(2)}× | ${rss} MiB | ${times} |`
    );
  };
  const version = execFileSync('dpkg-query', ['-W', '-f=${Version}', 'docker-registry'], { encoding: 'utf8' });
  const section = [
    '<!-- oci:begin -->',
    '## OCI registry (publish and pull)',
    '',
    `\`node bench/oci.mjs\` on ${new Date().toISOString().slice(0, 10)}: Debian's docker-registry ${version}`,
    'on loopback',
    `(filesystem storage, same disk), ${sizeMiB} MiB of random bytes, median of ${repeat} runs, each contestant in a`,
    'process of its own. visor publishes as the oci target does (64 MiB chunks, each a fresh ranged read of the',
    'file, sha256 computed on the way); it pulls with the digest verified while streaming.',
    `Load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${cpus().length} cores (a shared machine).`,
    '',
    '| figure | visor | curl | speed ratio | visor peak RSS | visor runs (s) |',
    '|---|---:|---:|---:|---:|---:|',
    row(`Publish ${sizeMiB} MiB: \`OciClient.pushBlob\` vs \`curl -T\` (POST + PUT)`, runs.visorPush, runs.curlPush),
    row(`Pull a ${sizeMiB} MiB blob: \`OciClient.getBlob\` vs \`curl\``, runs.visorPull, runs.curlPull),
    row('… the same vs `curl \\| sha256sum` (both check the digest)', runs.visorPull, runs.curlPullHash),
    '<!-- oci:end -->',
  ].join('\n');
  const path = join(repoRoot, 'BENCHMARKS.md');
  const text = readFileSync(path, 'utf8');
  const marked = /<!-- oci:begin -->[\s\S]*<!-- oci:end -->/;
  writeFileSync(path, marked.test(text) ? text.replace(marked, section) : `${text.trimEnd()}\n\n${section}\n`);
  process.stdout.write(`${section}\n`);
} finally {
  registry.kill('SIGTERM');
  rmSync(base, { recursive: true, force: true });
}
