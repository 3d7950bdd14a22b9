// The central deployment against the embedded one: `GET /images` (1,000 images, signed requests)
// and signed ingest through two `visor serve` replicas on one PostgreSQL catalog, against one
// `visor serve` on SQLite. Both setups keep the bits in a file store (one folder, shared by the
// replicas on this machine), so that the difference is the catalog and the second replica, not
// the store. The load generator (autocannon) and the upload client run in the bench process.
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

function cannon(options) {
  return new Promise((resolve, reject) =>
    autocannon(options, (error, result) => (error ? reject(error) : resolve(result))),
  );
}

/** `connections` spread over every server, for `seconds`; the servers' answers added up. */
async function listLoad(kit, servers, user, path, connections, seconds) {
  const per = Math.max(1, Math.round(connections / servers.length));
  const options = (url) => ({
    url,
    connections: per,
    timeout: 60,
    duration: seconds,
    requests: [
      {
        method: 'GET',
        path,
        setupRequest: (r) => ({ ...r, headers: kit.signedHeaders(user, 'GET', path, { accept: 'application/json' }) }),
      },
    ],
  });
  const results = await Promise.all(servers.map((s) => cannon(options(s.url))));
  const total = results.reduce((n, r) => n + r.requests.total, 0);
  return {
    rps: results.reduce((n, r) => n + r.requests.average, 0),
    requests: total,
    p50: Math.max(...results.map((r) => r.latency.p50)),
    p99: Math.max(...results.map((r) => r.latency.p99)),
    errors: results.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0),
  };
}

/** `count` signed streamed uploads of `size` bytes, `concurrency` at a time, round-robin over the servers. */
async function ingest(kit, servers, user, { count, size, concurrency, name }) {
  const data = randomBytes(size);
  const clients = servers.map((s) => kit.client(s.url, user));
  let next = 0;
  const started = process.hrtime.bigint();
  const latencies = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) {
        const t0 = process.hrtime.bigint();
        await clients[i % clients.length].add(
          { name: `${name}-${i}`, architecture: 'x86_64', format: 'raw' },
          { stream: Readable.from([data]), size },
        );
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return {
    count,
    size,
    concurrency,
    seconds,
    perSecond: count / seconds,
    p50: latencies[Math.floor(latencies.length / 2)],
    p99: latencies[Math.floor(latencies.length * 0.99)],
  };
}

export async function centralFigures({
  kit,
  setups,
  images,
  connections,
  seconds,
  warmup,
  uploads,
  uploadSize,
  uploadConcurrency,
  log,
}) {
  const out = [];
  for (const setup of setups) {
    const { servers, user, label } = setup;
    log(`  ${label}: registering ${images} images`);
    const admin = kit.client(servers[0].url, user);
    for (let i = 0; i < images; i += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, images - i) }, (_, j) =>
          admin.add({ name: `list-${String(i + j).padStart(4, '0')}`, architecture: 'x86_64', format: 'qcow2' }),
        ),
      );
    }
    const path = `/images?limit=${images}`;
    const listed = (await kit.client(servers[servers.length - 1].url, user).list('brief', { limit: String(images) }))
      .length;
    if (listed !== images) throw new Error(`${label}: the listing holds ${listed} images, not ${images}`);
    log(`  ${label}: GET ${path}, ${connections} connections, ${warmup} s warm-up, ${seconds} s measured`);
    await listLoad(kit, servers, user, path, connections, warmup);
    const list = await listLoad(kit, servers, user, path, connections, seconds);
    log(`  ${label}: ${uploads} signed uploads of ${uploadSize} bytes, ${uploadConcurrency} at a time`);
    const up = await ingest(kit, servers, user, {
      count: uploads,
      size: uploadSize,
      concurrency: uploadConcurrency,
      name: `ingest-${label.replace(/\W+/g, '-')}`,
    });
    out.push({ label, replicas: servers.length, catalog: setup.catalog, list, ingest: up });
  }
  return out;
}
