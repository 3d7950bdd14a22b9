import { answerClientError } from './client-error.js';
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import Fastify, {
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import {
  CONTENT_HASH_HEADER,
  STREAMING_PAYLOAD,
  UNSIGNED_PAYLOAD,
  type SignableRequest,
} from '../../core/auth/signing.js';
import { isVisorError, toVisorError, VisorError } from '../../core/errors.js';
import type { Logger } from '../../core/logging/logger.js';
import type { Caller } from '../service/access.js';
import type { ImageService } from '../service/image-service.js';
import type { Authenticator } from './auth.js';
import { guardConnections, type ConnectionLimits } from './connection-guard.js';
import { bodyDeadline, type UploadRate } from './deadlines.js';
import { errorBody, genericServerError, httpStatus } from './errors.js';
import { parseJsonBody } from './json-body.js';
import { type ActiveSession, CSRF_HEADER, csrfMatches, type SessionStore } from './sessions.js';
import { imageRoutes } from './routes/images.js';
import { ApiMetrics } from './api-metrics.js';
import { bearerMatches, healthRoutes, type ReadinessCheck } from './health.js';
import { Registry } from 'prom-client';
import { lifecycleRoutes } from './routes/lifecycle.js';

export interface ApiServerOptions {
  service: ImageService;
  logger: Logger;
  /** Undefined runs without auth: every request acts as the admin `anonymous` (loopback development only). */
  authenticator: Authenticator | undefined;
  /** Limit of JSON metadata bodies. */
  jsonBodyLimit?: number;
  /** Page size when a listing names none. */
  defaultLimit?: number;
  /** Upload bodies idle this long are dropped (default 120 s). */
  uploadIdleMs?: number;
  /** More routes (the agent's status, trigger, metrics, content), registered beside the image API. */
  extraRoutes?: FastifyPluginAsync;
  /** Paths (prefixes) served without a signature: health, metrics, one-time content URLs. */
  publicPaths?: readonly string[];
  /** Path prefixes whose rest is a secret (one-time content tokens): never written to the log. */
  secretPaths?: readonly string[];
  /** PEM certificate chain and key: the API speaks HTTPS. */
  tls?: { cert: Buffer; key: Buffer };
  /** Deadlines and caps (defaults: see core/config/schema.ts). */
  limits?: Partial<ServerLimits>;
  /**
   * Dashboard sessions: a request without a signature may instead carry a session cookie
   * (and, to change anything, the session's CSRF token). Same callers, same authorization.
   */
  sessions?: SessionStore;
  /** What /health/ready checks (default: nothing, always ready) and how long each may take. */
  readiness?: readonly ReadinessCheck[];
  readyDeadlineMs?: number;
  /** The API's metrics (default: a fresh registry). */
  metrics?: ApiMetrics;
  /**
   * /metrics: `open` serves it to anyone (loopback), `token` to a bearer of it, otherwise to a
   * signed admin request; `registries` are merged in (the agent's). Default: open.
   */
  metricsAccess?: { enabled: boolean; open: boolean; token?: string | undefined; registries?: readonly Registry[] };
}

export interface ServerLimits extends ConnectionLimits {
  /** A metadata body must arrive whole within this. */
  bodyTimeoutMs: number;
  uploadRate: UploadRate;
}

const defaultLimits: ServerLimits = {
  headerTimeoutMs: 20_000,
  bodyTimeoutMs: 30_000,
  uploadRate: { minBytesPerSecond: 10_240, windowMs: 60_000 },
  maxConnections: 1000,
  maxConnectionsPerAddress: 256,
};

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
    /** How the body is vouched for: not at all (no auth), by a signed sha256, or by a signed trailer. */
    bodyCheck: BodyCheck;
  }
}

export type BodyCheck =
  | { kind: 'none' }
  | { kind: 'sha256'; sha256: string }
  /** A streamed upload: its sha256 and a signature over it arrive as trailers, checked by `verify`. */
  | { kind: 'trailer'; verify: (sha256: string, signature: string) => boolean };

const anonymousAdmin: Caller = { id: 'anonymous', name: 'anonymous', admin: true };
const unchecked: BodyCheck = { kind: 'none' };

/**
 * The image service's HTTP API (VISOR's routes). Requests are authenticated before their body
 * is read; upload bodies are never parsed or buffered, only streamed to the store.
 */
export function buildApiServer(options: ApiServerOptions): FastifyInstance {
  const limits: ServerLimits = { ...defaultLimits, ...options.limits };
  // Node checks header deadlines only every connectionsCheckingInterval (30 s by default).
  const serverOptions = {
    headersTimeout: limits.headerTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, limits.headerTimeoutMs),
    requestTimeout: 0,
  };
  const app = Fastify({
    logger: false,
    bodyLimit: options.jsonBodyLimit ?? 1024 * 1024,
    // Image ids and paths are short; a huge URL is an attack, not a request.
    routerOptions: { maxParamLength: 200 },
    requestTimeout: 0,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    exposeHeadRoutes: false,
    // A random id per request, in every answer and log line: 5xx answers name it instead of their details.
    genReqId: requestIds(),
    requestIdHeader: false,
    clientErrorHandler: answerClientError,
    ...(options.tls
      ? { https: { ...serverOptions, ...options.tls, handshakeTimeout: limits.headerTimeoutMs } }
      : { http: serverOptions }),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  guardConnections(app.server as Server, limits, options.tls !== undefined);
  const logger = options.logger;
  const secretPaths = options.secretPaths ?? [];
  /** The path as it may be logged: secret tokens in it replaced. */
  const loggedPath = (request: FastifyRequest) => {
    const path = request.url.split('?')[0] ?? '';
    const secret = secretPaths.find((p) => path.startsWith(p) && path.length > p.length);
    return secret ? `${secret}***` : path;
  };

  app.decorateRequest('caller', null as unknown as Caller);
  app.decorateRequest('bodyCheck', null as never);

  // Upload bodies stay streams: the route hands request.raw to the store.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const data = body as Buffer;
    const check = request.bodyCheck;
    if (check.kind === 'trailer') {
      const why = `a metadata body is signed with its sha256 in ${CONTENT_HASH_HEADER}, not streamed`;
      done(new VisorError('invalidInput', why), undefined);
      return;
    }
    if (check.kind === 'sha256' && createHash('sha256').update(data).digest('hex') !== check.sha256) {
      done(new VisorError('forbidden', `the body does not match the signed ${CONTENT_HASH_HEADER}`), undefined);
      return;
    }
    if (data.length === 0) {
      done(null, {});
      return;
    }
    try {
      done(null, parseJsonBody(data));
    } catch (error) {
      done(error as VisorError, undefined);
    }
  });

  const metrics = options.metrics ?? new ApiMetrics();
  metrics.instrument(app);
  const metricsAccess = options.metricsAccess ?? { enabled: true, open: true };
  // With a token, /metrics skips signatures: its handler checks the bearer token instead.
  const metricsPublic = metricsAccess.enabled && (metricsAccess.open || metricsAccess.token !== undefined);
  const publicPaths = [
    '/health',
    '/health/live',
    '/health/ready',
    ...(metricsPublic ? ['/metrics'] : []),
    ...(options.publicPaths ?? []),
  ];
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    const type = request.headers['content-type']?.split(';')[0]?.trim();
    if (type !== 'application/octet-stream') bodyDeadline(request.raw, reply.raw, limits.bodyTimeoutMs);
    const path = request.url.split('?')[0] ?? '';
    if (!options.authenticator || publicPaths.some((p) => path === p || (p.endsWith('/') && path.startsWith(p)))) {
      request.caller = anonymousAdmin;
      request.bodyCheck = unchecked;
      return;
    }
    if (options.sessions && request.headers.authorization === undefined) {
      const session = await options.sessions.find(request.headers.cookie);
      if (session) {
        if (!safeMethods.has(request.method)) checkCsrf(request, session);
        request.caller = session.caller;
        request.bodyCheck = unchecked;
        return;
      }
    }
    const signable = toSignable(request.raw);
    const authenticated = await options.authenticator.authenticate(signable);
    request.caller = authenticated.caller;
    request.bodyCheck = bodyCheckOf(signable, type, authenticated.verifyTrailer);
  });

  // One line per request. Refusals (4xx: bad signatures, unknown images, bad input) are info; answered
  // requests are debug: at info, the line cost a small request's own CPU again (see BENCHMARKS.md),
  // and /metrics counts them by route and status anyway. Failures (5xx) are logged as errors too.
  app.addHook('onResponse', async (request, reply) => {
    const status = reply.statusCode;
    const line = {
      method: request.method,
      path: loggedPath(request),
      status,
      request: request.id,
      ms: Math.round(reply.elapsedTime),
      caller: request.caller?.name,
    };
    if (status >= 400) logger.info('request', line);
    else logger.debug('request', line);
  });

  app.setErrorHandler(async (error, request, reply) => {
    const visor = fromFastifyError(error);
    const status = httpStatus(visor);
    if (status === 401) void reply.header('www-authenticate', 'VISOR-HMAC-SHA256');
    // Whatever the client was still sending is of no use now.
    if (!request.raw.complete) void reply.header('connection', 'close');
    const where = { request: request.id, method: request.method, path: loggedPath(request), status };
    // A client that went away mid-request is not the server failing: one info line says so.
    const cutOff = request.raw.destroyed && !request.raw.complete;
    if (cutOff) logger.info('request cut off by the client', { ...where, error: visor.message });
    if (status < 500) return sendError(reply, status, visor.message);
    // Our own faults and our backends': the details (endpoints, buckets, keys, paths) go to the log only.
    if (!cutOff) logger.error('request failed', { ...where, error: visor });
    return sendError(reply, status, genericServerError(status, request.id), request.id);
  });
  app.setNotFoundHandler(async (request, reply) =>
    sendError(reply, 404, `no route for ${request.method} ${request.url.split('?')[0]}`),
  );

  healthRoutes(app, {
    checks: options.readiness ?? [],
    deadlineMs: options.readyDeadlineMs ?? 2000,
    metrics,
    logger,
  });
  if (metricsAccess.enabled) {
    const registry = Registry.merge([metrics.registry, ...(metricsAccess.registries ?? [])]);
    app.get('/metrics', async (request, reply) => {
      if (!metricsAccess.open) {
        if (metricsAccess.token !== undefined) {
          if (!bearerMatches(request.headers.authorization, metricsAccess.token)) {
            void reply.header('www-authenticate', 'Bearer');
            throw new VisorError('auth', '/metrics needs Authorization: Bearer <server.metrics.token>');
          }
        } else if (!request.caller.admin) throw new VisorError('forbidden', 'only an admin may read /metrics');
      }
      return reply.type(registry.contentType).send(await registry.metrics());
    });
  }
  app.register(imageRoutes, {
    service: options.service,
    defaultLimit: options.defaultLimit ?? 1000,
    uploadIdleMs: options.uploadIdleMs ?? 120_000,
    uploadRate: limits.uploadRate,
    logger,
  });
  app.register(lifecycleRoutes, { service: options.service });
  if (options.extraRoutes) app.register(options.extraRoutes);
  return app;
}

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Random 16-hex-digit request ids, cut from a pool of random bytes refilled 512 ids at a time:
 * a call into the system's random source per request cost more than the rest of the id.
 */
function requestIds(): () => string {
  let pool = Buffer.alloc(0);
  let at = 0;
  return () => {
    if (at + 8 > pool.length) {
      pool = randomBytes(4096);
      at = 0;
    }
    at += 8;
    return pool.toString('hex', at - 8, at);
  };
}

/**
 * A change made with a session cookie must carry the session's CSRF token (which another site
 * cannot read) and, when the browser names the page's origin, come from this server's pages.
 */
export function checkCsrf(request: FastifyRequest, session: ActiveSession): void {
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== `${request.protocol}://${request.host}`) {
    throw new VisorError('forbidden', `a change from another site (${origin.slice(0, 100)}) is refused`);
  }
  if (!csrfMatches(session, request.headers[CSRF_HEADER])) {
    throw new VisorError('forbidden', `missing or wrong ${CSRF_HEADER} header: reload the page and try again`);
  }
}

/**
 * Every body is signed: with its sha256 up front, or — for a streamed upload — in a signed
 * trailer. A body nobody signed (UNSIGNED-PAYLOAD) could be swapped in transit and is refused.
 */
function bodyCheckOf(
  request: SignableRequest,
  type: string | undefined,
  verify: (sha256: string, signature: string) => boolean,
): BodyCheck {
  const hash = request.headers[CONTENT_HASH_HEADER];
  if (hash !== undefined && /^[0-9a-f]{64}$/.test(hash)) return { kind: 'sha256', sha256: hash };
  if (hash === STREAMING_PAYLOAD) {
    if (type !== 'application/octet-stream' || !/\bchunked\b/i.test(request.headers['transfer-encoding'] ?? '')) {
      throw new VisorError(
        'invalidInput',
        `${STREAMING_PAYLOAD} is for image uploads sent chunked (application/octet-stream, Transfer-Encoding: ` +
          'chunked), whose trailers carry the signed sha256',
      );
    }
    return { kind: 'trailer', verify };
  }
  if (hash === UNSIGNED_PAYLOAD) {
    throw new VisorError(
      'auth',
      `${UNSIGNED_PAYLOAD} is not accepted: sign the body's sha256 in ${CONTENT_HASH_HEADER}, ` +
        `or stream an upload with ${STREAMING_PAYLOAD} and its signed trailer`,
    );
  }
  throw new VisorError(
    'auth',
    `missing or malformed ${CONTENT_HASH_HEADER} header ` +
      `(the body's sha256, or ${STREAMING_PAYLOAD} for a streamed upload)`,
  );
}

function sendError(reply: FastifyReply, status: number, message: string, requestId?: string): FastifyReply {
  const body = { ...errorBody(status, message), ...(requestId ? { request_id: requestId } : {}) };
  return reply.code(status).type('application/json').send(body);
}

/** Fastify's own errors (bad JSON, wrong media type, too large) become 4xx with our body. */
function fromFastifyError(error: unknown): VisorError {
  if (isVisorError(error)) return error;
  const e = error as { statusCode?: number; code?: string; message?: string };
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return Object.assign(
      new VisorError(
        'invalidInput',
        'unsupported Content-Type: send application/json metadata or an application/octet-stream image',
        { cause: error },
      ),
      { status: 415 },
    );
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return Object.assign(new VisorError('invalidInput', 'the metadata body is too large', { cause: error }), {
      status: 413,
    });
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return new VisorError('invalidInput', e.message ?? 'bad request', { cause: error });
  return toVisorError(error);
}

export function toSignable(raw: IncomingMessage): SignableRequest {
  const url = raw.url ?? '/';
  const at = url.indexOf('?');
  const path = at < 0 ? url : url.slice(0, at);
  const query = at < 0 ? [] : [...new URLSearchParams(url.slice(at + 1))];
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw.headers))
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
  return { method: raw.method ?? 'GET', path, query, headers };
}

export type { FastifyRequest };
