import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VisorClient } from '../../agent/client/client.js';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { sealingBox } from '../../agent/serve.js';
import { addUser, type NewCredentials } from '../../agent/service/users.js';
import { silentLogger } from '../../core/logging/logger.js';
import { repoRoot, visorBin } from '../support/cli.js';
import { runLoad, type LoadRequest, type LoadResult } from '../support/load-client.js';

/**
 * Load: many concurrent API clients against a real `visor serve` (the built CLI, its own
 * process, default logging) for VISOR_LOAD_SECONDS (default 60) with VISOR_LOAD_CONNECTIONS
 * (default 200) clients, every request signed afresh. The mix: listings with filters, sorting
 * and paging; HEAD and GET of metadata; small ranged and whole downloads; a few uploads. Every
 * answer must be the expected one: 0 errors. Latency percentiles and requests/s are printed.
 */
const seconds = Number(process.env['VISOR_LOAD_SECONDS'] ?? 60);
const connections = Number(process.env['VISOR_LOAD_CONNECTIONS'] ?? 200);

/** A small deterministic PRNG: the same mix every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  return port;
}

function report(result: LoadResult): string {
  // The first column left-aligned, the figures right-aligned.
  const widths = [16, 8, 8, 8, 8, 9, 7];
  const line = (cells: string[]) =>
    `  ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' ')}`;
  const row = (
    label: string,
    p: { count: number; p50: number; p90: number; p99: number; max: number },
    errors: number,
  ) => line([label, String(p.count), ...[p.p50, p.p90, p.p99, p.max].map((v) => v.toFixed(1)), String(errors)]);
  return [
    `visor API load: ${connections} concurrent signed clients ` +
      `for ${result.seconds.toFixed(1)} s against \`visor serve\``,
    `  requests ${result.requests}, errors ${result.errors}, ${result.requestsPerSecond.toFixed(0)} requests/s, ` +
      `${(result.bytes / 1024 / 1024).toFixed(1)} MiB received`,
    line(['kind', 'count', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors']),
    row('all', result.latency, result.errors),
    ...Object.entries(result.byKind)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([kind, p]) => row(kind, p, p.errors)),
    ...(result.failures.length ? ['  first failures:', ...result.failures.map((f) => `    ${f}`)] : []),
  ].join('\n');
}

describe(`API under load: ${connections} signed clients for ${seconds} s, 0 errors`, () => {
  let dir: string;
  let child: ChildProcess | undefined;
  let url: string;
  const users: NewCredentials[] = [];
  const listed: string[] = [];
  const files: { id: string; size: number }[] = [];

  beforeAll(async () => {
    if (!existsSync(visorBin)) throw new Error(`${visorBin} is missing: build first (npm run build)`);
    dir = await mkdtemp(join(tmpdir(), 'visor-load-'));
    const config = join(dir, 'visor.yaml');
    await writeFile(config, `dataDir: ${join(dir, 'data')}\nserver: { host: 127.0.0.1 }\n`);
    const setup = await openRuntime({ configFile: config, env: {}, logger: silentLogger });
    const catalog = await setup.catalog();
    const box = await sealingBox(setup);
    users.push(await addUser(catalog.users, box, 'admin', true));
    for (const name of ['alice', 'bob', 'carol']) users.push(await addUser(catalog.users, box, name, false));
    await setup.close();

    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const log = createWriteStream(join(dir, 'serve.log'));
    // VISOR_LOAD_NODE_ARGS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see where the server spends its time.
    const nodeArgs = (process.env['VISOR_LOAD_NODE_ARGS'] ?? '').split(/\s+/).filter(Boolean);
    child = spawn(process.execPath, [...nodeArgs, visorBin, 'serve', '-c', config, '--port', String(port)], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'], HOME: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`visor serve did not start: ${await readFile(join(dir, 'serve.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 200));
    }

    // A catalog to read: 300 registered images and 20 with 64 KiB of bits.
    const random = prng(1);
    const clients = users.map(
      (u) => new VisorClient({ url, accessKey: u.accessKey, secretKey: u.secretKey, source: 'load-test' }),
    );
    for (let i = 0; i < 300; i++) {
      const image = await clients[1 + (i % 3)]!.add({
        name: `load-${String(i).padStart(3, '0')}`,
        architecture: random() < 0.7 ? 'x86_64' : 'aarch64',
        format: random() < 0.5 ? 'qcow2' : 'raw',
        access: i % 10 === 0 ? 'private' : 'public',
        os_distro: random() < 0.5 ? 'debian' : 'ubuntu',
        flavour: random() < 0.3 ? 'small' : 'big',
        tags: i % 7 === 0 ? ['gold'] : [],
      });
      if (image['access'] === 'public') listed.push(String(image['_id']));
    }
    for (let i = 0; i < 20; i++) {
      const data = Buffer.alloc(64 * 1024, i);
      const image = await clients[1]!.add(
        { name: `bits-${i}`, architecture: 'x86_64', format: 'raw', access: 'public' },
        { stream: Readable.from([data]), size: data.length },
      );
      files.push({ id: String(image['_id']), size: data.length });
    }
  }, 300_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (dir && !process.env['VISOR_LOAD_KEEP']) await rm(dir, { recursive: true, force: true });
    else if (dir) console.log(`kept ${dir}`);
  });

  it(
    'answers every request correctly',
    async () => {
      const randoms = Array.from({ length: connections }, (_, i) => prng(1000 + i));
      const upload = Buffer.alloc(4096, 7);
      let uploads = 0;
      const filters: [string, string][][] = [
        [
          ['architecture', 'x86_64'],
          ['limit', '20'],
        ],
        [
          ['format', 'qcow2'],
          ['sort', 'name'],
          ['dir', 'desc'],
          ['limit', '25'],
        ],
        [
          ['os_distro', 'debian'],
          ['architecture', 'aarch64'],
        ],
        [['tag', 'gold']],
        [
          ['flavour', 'small'],
          ['limit', '50'],
        ],
        [
          ['owner', 'alice'],
          ['sort', 'created_at'],
          ['limit', '10'],
        ],
        [['name', 'load-042']],
      ];
      const next = (client: number): LoadRequest => {
        const r = randoms[client]!();
        const pick = <T>(list: readonly T[]) => list[Math.floor(randoms[client]!() * list.length)]!;
        if (r < 0.35)
          return { kind: 'list+filters', method: 'GET', path: '/images', query: pick(filters), expect: [200] };
        if (r < 0.45)
          return {
            kind: 'list detail',
            method: 'GET',
            path: '/images/detail',
            query: [
              ['limit', '10'],
              ['architecture', 'x86_64'],
            ],
            expect: [200],
          };
        if (r < 0.6)
          return { kind: 'HEAD image', method: 'HEAD', path: `/images/${pick(listed)}`, expect: [200], length: 0 };
        if (r < 0.75) return { kind: 'GET meta', method: 'GET', path: `/images/${pick(listed)}/meta`, expect: [200] };
        if (r < 0.95) {
          const file = pick(files);
          const start = Math.floor(randoms[client]!() * (file.size - 4096));
          return {
            kind: 'GET range',
            method: 'GET',
            path: `/images/${file.id}`,
            headers: { range: `bytes=${start}-${start + 4095}` },
            expect: [206],
            length: 4096,
          };
        }
        if (r < 0.98) {
          const file = pick(files);
          return { kind: 'GET file', method: 'GET', path: `/images/${file.id}`, expect: [200], length: file.size };
        }
        uploads++;
        return {
          kind: 'POST upload',
          method: 'POST',
          path: '/images',
          headers: {
            'content-type': 'application/octet-stream',
            'x-image-meta-name': `up-${client}-${uploads}`,
            'x-image-meta-architecture': 'x86_64',
          },
          body: upload,
          expect: [201],
        };
      };
      const serverCpu = async () => {
        const stat = await readFile(`/proc/${child!.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return (Number(fields[11]) + Number(fields[12])) / 100;
      };
      const cpuBefore = await serverCpu();
      // The load generator shares the machine's cores with the server: its own cost is reported beside.
      const clientBefore = process.cpuUsage();
      const result = await runLoad({
        url,
        connections,
        durationMs: seconds * 1000,
        next,
        credentials: (client) => users[1 + (client % 3)]!,
      });
      const serverCpuSeconds = (await serverCpu()) - cpuBefore;
      const clientCpu = process.cpuUsage(clientBefore);
      const clientCpuSeconds = (clientCpu.user + clientCpu.system) / 1e6;
      const perRequest = (seconds: number) => ((seconds * 1000) / Math.max(1, result.requests)).toFixed(2);
      const cpu =
        `  CPU: server ${serverCpuSeconds.toFixed(2)} s (${perRequest(serverCpuSeconds)} ms per request), ` +
        `load generator ${clientCpuSeconds.toFixed(2)} s (${perRequest(clientCpuSeconds)} ms per request)`;
      console.log(`\n${report(result)}\n${cpu}\n`);
      // For `npm run bench`, which runs this test and puts its figures in BENCHMARKS.md.
      const resultsFile = process.env['VISOR_LOAD_RESULTS'];
      if (resultsFile)
        await writeFile(resultsFile, JSON.stringify({ connections, serverCpuSeconds, clientCpuSeconds, ...result }));
      expect(result.failures).toEqual([]);
      expect(result.errors).toBe(0);
      expect(result.requests).toBeGreaterThan(connections);
      expect(result.byKind['POST upload']?.count ?? 0).toBeGreaterThan(0);
      // The service logged no failure of its own.
      expect(await readFile(join(dir, 'serve.log'), 'utf8')).not.toMatch(/"level":"error"/);
    },
    (seconds + 180) * 1000,
  );
});
