import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { VisorError } from '../../core/errors.js';
import type { Logger } from '../../core/logging/logger.js';
import type { ApiMetrics } from './api-metrics.js';

/** One thing that must answer for the service to be ready (the catalog, the default store, the agent's runs). */
export interface ReadinessCheck {
  name: string;
  /** Throws (or rejects) when not ready; `signal` fires at the deadline. */
  check(signal: AbortSignal): Promise<void>;
  /** Observed in visor_backend_latency_seconds under this name. */
  backend?: string;
}

export interface HealthOptions {
  checks: readonly ReadinessCheck[];
  deadlineMs: number;
  metrics: ApiMetrics;
  logger: Logger;
}

/**
 * `/health/live` (the process answers) and `/health/ready` (each check answered within the
 * deadline: 200, or 503 naming what failed). `/health` stays the liveness probe it always was.
 */
export function healthRoutes(app: FastifyInstance, options: HealthOptions): void {
  const live = async () => ({ status: 'ok' });
  app.get('/health', live);
  app.get('/health/live', live);
  app.get('/health/ready', async (_request, reply) => {
    const results = await Promise.all(options.checks.map((c) => runCheck(c, options)));
    const ready = results.every((r) => r.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks: results });
  });
}

async function runCheck(
  c: ReadinessCheck,
  { deadlineMs, metrics, logger }: HealthOptions,
): Promise<{ name: string; ok: boolean; ms: number; error?: string }> {
  const controller = new AbortController();
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new VisorError('timeout', `no answer within ${deadlineMs} ms`);
      controller.abort(error);
      reject(error);
    }, deadlineMs);
  });
  try {
    await Promise.race([c.check(controller.signal), deadline]);
    const ms = Math.round(performance.now() - started);
    if (c.backend) metrics.observeBackend(c.backend, ms / 1000, true);
    return { name: c.name, ok: true, ms };
  } catch (error) {
    const ms = Math.round(performance.now() - started);
    if (c.backend) metrics.observeBackend(c.backend, ms / 1000, false);
    // The probe is unauthenticated: endpoints, buckets and paths in the error go to the log only.
    logger.warn('readiness check failed', { check: c.name, ms, error });
    const timedOut = error instanceof VisorError && error.kind === 'timeout';
    return {
      name: c.name,
      ok: false,
      ms,
      error: timedOut ? `no answer within ${deadlineMs} ms` : 'failed (see the log)',
    };
  } finally {
    clearTimeout(timer);
  }
}

/** `Authorization: Bearer <token>`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const given = /^Bearer\s+(\S+)$/i.exec(header ?? '')?.[1];
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
