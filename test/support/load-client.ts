import { createHash } from 'node:crypto';
import { Agent, request } from 'node:http';
import { CONTENT_HASH_HEADER, EMPTY_SHA256, signRequest } from '../../core/auth/signing.js';
import type { Credentials } from './raw-http.js';

/**
 * A small load generator for visor's API: many concurrent keep-alive clients, each request
 * signed afresh (its own nonce and date, as a real client does: the server refuses replays),
 * each answer checked. Node's http client rather than autocannon because the mix includes HEAD
 * (autocannon's parser waits for the body a HEAD's Content-Length announces).
 */
export interface LoadRequest {
  /** Label for the per-kind figures. */
  kind: string;
  method: 'GET' | 'HEAD' | 'POST';
  path: string;
  query?: [string, string][];
  headers?: Record<string, string>;
  body?: Buffer;
  /** Status codes that count as success. */
  expect: readonly number[];
  /** Body length that must come back, when known. */
  length?: number;
}

export interface LoadOptions {
  url: string;
  connections: number;
  durationMs: number;
  /** The next request of client `client` (called for every request). */
  next(client: number): LoadRequest;
  credentials(client: number): Credentials;
  timeoutMs?: number;
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LoadResult {
  requests: number;
  errors: number;
  /** The first few failures, for the log. */
  failures: string[];
  seconds: number;
  requestsPerSecond: number;
  bytes: number;
  latency: Percentiles;
  byKind: Record<string, Percentiles & { errors: number }>;
}

function percentiles(values: number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const at = (p: number) =>
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return {
    count: sorted.length,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    max: sorted.length ? sorted[sorted.length - 1]! : 0,
  };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const base = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections, maxFreeSockets: options.connections });
  const latencies: number[] = [];
  const perKind = new Map<string, { latencies: number[]; errors: number }>();
  const failures: string[] = [];
  let errors = 0;
  let bytes = 0;
  const started = performance.now();
  const end = started + options.durationMs;

  const once = (client: number, r: LoadRequest): Promise<void> =>
    new Promise((resolve) => {
      const query = r.query ?? [];
      const creds = options.credentials(client);
      const headers = signRequest(creds.accessKey, creds.secretKey, {
        method: r.method,
        path: r.path,
        query,
        headers: {
          ...r.headers,
          [CONTENT_HASH_HEADER]: r.body ? createHash('sha256').update(r.body).digest('hex') : EMPTY_SHA256,
          ...(r.body ? { 'content-length': String(r.body.length) } : {}),
        },
      });
      const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
      const t0 = performance.now();
      const stats = perKind.get(r.kind) ?? { latencies: [], errors: 0 };
      perKind.set(r.kind, stats);
      const fail = (why: string) => {
        errors++;
        stats.errors++;
        if (failures.length < 10) failures.push(`${r.kind} ${r.method} ${r.path}: ${why}`);
        resolve();
      };
      const req = request(
        {
          host: base.hostname,
          port: base.port,
          method: r.method,
          path: `${r.path}${qs ? `?${qs}` : ''}`,
          headers,
          agent,
          timeout: options.timeoutMs ?? 30_000,
        },
        (res) => {
          let length = 0;
          res.on('data', (chunk: Buffer) => (length += chunk.length));
          res.on('error', (e) => fail(e.message));
          res.on('end', () => {
            const ms = performance.now() - t0;
            bytes += length;
            if (!r.expect.includes(res.statusCode ?? 0)) return fail(`status ${res.statusCode}`);
            if (r.length !== undefined && length !== r.length) return fail(`${length} bytes, expected ${r.length}`);
            latencies.push(ms);
            stats.latencies.push(ms);
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => fail(e.message));
      req.end(r.body);
    });

  await Promise.all(
    Array.from({ length: options.connections }, async (_, client) => {
      while (performance.now() < end) await once(client, options.next(client));
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  const requests = latencies.length + errors;
  return {
    requests,
    errors,
    failures,
    seconds,
    requestsPerSecond: requests / seconds,
    bytes,
    latency: percentiles(latencies),
    byKind: Object.fromEntries(
      [...perKind].map(([kind, s]) => [kind, { ...percentiles(s.latencies), errors: s.errors }]),
    ),
  };
}
