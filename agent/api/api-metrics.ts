import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of the image API (its own registry): requests by route and status,
 * latency, bytes in and out, uploads in flight, and how long the catalog and stores take to
 * answer the readiness probes.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly #requests = new Counter({
    name: 'visor_http_requests_total',
    help: 'API requests by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  readonly #latency = new Histogram({
    name: 'visor_http_request_duration_seconds',
    help: 'API request latency (to the last byte of the answer) by method and route',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
    registers: [this.registry],
  });
  readonly #bytesIn = new Counter({
    name: 'visor_http_received_bytes_total',
    help: 'Bytes received from API clients (requests, uploads included)',
    registers: [this.registry],
  });
  readonly #bytesOut = new Counter({
    name: 'visor_http_sent_bytes_total',
    help: 'Bytes sent to API clients (answers, downloads included)',
    registers: [this.registry],
  });
  readonly #uploads = new Gauge({
    name: 'visor_http_uploads_in_flight',
    help: 'Image uploads being received',
    registers: [this.registry],
  });
  readonly #backend = new Histogram({
    name: 'visor_backend_latency_seconds',
    help: 'How long the catalog and each store took to answer a probe',
    labelNames: ['backend', 'result'],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2, 10],
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'visor_' });
  }

  observeBackend(backend: string, seconds: number, ok: boolean): void {
    this.#backend.observe({ backend, result: ok ? 'ok' : 'failed' }, seconds);
  }

  /** Counts every request once its answer is done or the connection closed, whichever comes first. */
  instrument(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      const started = process.hrtime.bigint();
      const socket = request.raw.socket;
      const readBefore = socket.bytesRead;
      const writtenBefore = socket.bytesWritten;
      const type = request.headers['content-type']?.split(';')[0]?.trim();
      const upload = type === 'application/octet-stream' && (request.method === 'POST' || request.method === 'PUT');
      if (upload) this.#uploads.inc();
      reply.raw.once('close', () => {
        if (upload) this.#uploads.dec();
        // Unmatched URLs are one series, not one per path a scanner tries.
        const route = request.routeOptions.url ?? 'unmatched';
        const status = reply.raw.headersSent ? String(reply.raw.statusCode) : 'aborted';
        this.#requests.inc({ method: request.method, route, status });
        this.#latency.observe({ method: request.method, route }, Number(process.hrtime.bigint() - started) / 1e9);
        // The socket's count misses what arrived with the request head; a declared length does not.
        const declared = Number(request.headers['content-length'] ?? 0) || 0;
        this.#bytesIn.inc(Math.max(0, socket.bytesRead - readBefore, request.raw.complete ? declared : 0));
        this.#bytesOut.inc(Math.max(0, socket.bytesWritten - writtenBefore));
      });
    });
  }
}
