// GET /images with 1,000 images under a load generator (autocannon): visor with signed requests,
// a fresh date and nonce per request (signatures are single-use), side by side with Glance's
// GET /v2/images?limit=1000 with an X-Auth-Token. Both servers listen on loopback in one
// process each; the load generator runs in this process.
import autocannon from 'autocannon';
import { createRecord, glance, parallel } from '../lib/glance.mjs';

function load(options) {
  return new Promise((resolve, reject) => {
    autocannon(options, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

function summary(result) {
  return {
    rps: result.requests.average,
    requests: result.requests.total,
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
    bytesPerResponse: result.requests.total ? result.throughput.total / result.requests.total : 0,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

export async function apiFigures({
  kit,
  url,
  user,
  visor,
  peer,
  token,
  prefix,
  count,
  connections,
  seconds,
  warmup,
  log,
}) {
  log(`  registering ${count} images in visor and ${count} in Glance`);
  const names = Array.from({ length: count }, (_, i) => `${prefix}list-${String(i).padStart(4, '0')}`);
  await parallel(names, 8, (name) => visor.add({ name, architecture: 'x86_64', format: 'qcow2' }));
  await parallel(names, 4, (name) => createRecord(peer, token, name, { disk_format: 'qcow2' }));

  const visorPath = `/images?limit=${count}`;
  const glancePath = `/v2/images?limit=${count}`;
  const visorListed = (await visor.list('brief', { limit: String(count) })).length;
  const glanceListed = (await glance(peer, token, 'GET', glancePath)).images.length;
  if (visorListed !== count || glanceListed !== count)
    throw new Error(`listings hold ${visorListed} (visor) and ${glanceListed} (Glance) images, not ${count}`);

  // Glance takes seconds per 1,000-image page under load: a generous timeout, so that slow is not counted as failed.
  const common = { connections, timeout: 120 };
  const visorOptions = (path) => ({
    url,
    ...common,
    requests: [
      {
        method: 'GET',
        path,
        setupRequest: (request) => ({
          ...request,
          headers: kit.signedHeaders(user, 'GET', path, { accept: 'application/json' }),
        }),
      },
    ],
  });
  const glanceOptions = {
    url: peer.glanceUrl,
    ...common,
    requests: [{ method: 'GET', path: glancePath, headers: { 'x-auth-token': token, accept: 'application/json' } }],
  };

  const out = {};
  for (const [name, options] of [
    ['visor', visorOptions(visorPath)],
    ['glance', glanceOptions],
    ['visorDetail', visorOptions(`/images/detail?limit=${count}`)],
  ]) {
    log(`  ${name}: ${warmup} s warm-up, ${seconds} s measured, ${connections} connections`);
    await load({ ...options, duration: warmup });
    out[name] = summary(await load({ ...options, duration: seconds }));
    if (out[name].errors || out[name].non2xx)
      log(`  ${name}: ${out[name].errors} errors, ${out[name].non2xx} non-2xx responses under load`);
  }
  return { ...out, count, connections, seconds };
}
