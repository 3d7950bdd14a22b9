import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import { CONTENT_HASH_HEADER, UNSIGNED_PAYLOAD, type SignableRequest } from '../../core/auth/signing.js';
import { isVisorError, toVisorError, VisorError } from '../../core/errors.js';
import type { Logger } from '../../core/logging/logger.js';
import type { Caller } from '../service/access.js';
import type { ImageService } from '../service/image-service.js';
import type { Authenticator } from './auth.js';
import { errorBody, httpStatus } from './errors.js';
import { parseJsonBody } from './json-body.js';
import { imageRoutes } from './routes/images.js';

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
}

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
    /** sha256 the client signed for the body, when it signed one (not UNSIGNED-PAYLOAD). */
    signedContentHash: string | undefined;
  }
}

const anonymousAdmin: Caller = { name: 'anonymous', admin: true };

/**
 * The image service's HTTP API (VISOR's routes). Requests are authenticated before their body
 * is read; upload bodies are never parsed or buffered, only streamed to the store.
 */
export function buildApiServer(options: ApiServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: options.jsonBodyLimit ?? 1024 * 1024,
    // Image ids and paths are short; a huge URL is an attack, not a request.
    routerOptions: { maxParamLength: 200 },
    requestTimeout: 0,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    exposeHeadRoutes: false,
  });
  const logger = options.logger;

  app.decorateRequest('caller', null as unknown as Caller);
  app.decorateRequest('signedContentHash', undefined);

  // Upload bodies stay streams: the route hands request.raw to the store.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const data = body as Buffer;
    const declared = request.signedContentHash;
    if (declared !== undefined && createHash('sha256').update(data).digest('hex') !== declared) {
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

  const publicPaths = ['/health', ...(options.publicPaths ?? [])];
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0] ?? '';
    if (!options.authenticator || publicPaths.some((p) => path === p || (p.endsWith('/') && path.startsWith(p)))) {
      request.caller = anonymousAdmin;
      return;
    }
    const signable = toSignable(request.raw);
    request.caller = await options.authenticator.authenticate(signable);
    const hash = signable.headers[CONTENT_HASH_HEADER];
    if (!hash || (hash !== UNSIGNED_PAYLOAD && !/^[0-9a-f]{64}$/.test(hash))) {
      throw new VisorError('auth', `missing or malformed ${CONTENT_HASH_HEADER} header (the body's sha256, or ${UNSIGNED_PAYLOAD})`);
    }
    request.signedContentHash = hash === UNSIGNED_PAYLOAD ? undefined : hash;
  });

  app.addHook('onResponse', async (request, reply) => {
    logger.info('request', {
      method: request.method,
      path: request.url.split('?')[0],
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
      caller: request.caller?.name,
    });
  });

  app.setErrorHandler(async (error, request, reply) => {
    const visor = fromFastifyError(error);
    const status = httpStatus(visor);
    if (status >= 500) logger.error('request failed', { method: request.method, path: request.url.split('?')[0], error: visor });
    if (status === 401) void reply.header('www-authenticate', 'VISOR-HMAC-SHA256');
    // Whatever the client was still sending is of no use now.
    if (!request.raw.complete) void reply.header('connection', 'close');
    return sendError(reply, status, visor.message);
  });
  app.setNotFoundHandler(async (request, reply) => sendError(reply, 404, `no route for ${request.method} ${request.url.split('?')[0]}`));

  app.get('/health', async () => ({ status: 'ok' }));
  const defaultLimit = options.defaultLimit ?? 1000;
  const uploadIdleMs = options.uploadIdleMs ?? 120_000;
  app.register(imageRoutes, { service: options.service, defaultLimit, uploadIdleMs, logger });
  if (options.extraRoutes) app.register(options.extraRoutes);
  return app;
}

function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).type('application/json').send(errorBody(status, message));
}

/** Fastify's own errors (bad JSON, wrong media type, too large) become 4xx with our body. */
function fromFastifyError(error: unknown): VisorError {
  if (isVisorError(error)) return error;
  const e = error as { statusCode?: number; code?: string; message?: string };
  if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return Object.assign(new VisorError('invalidInput', 'unsupported Content-Type: send application/json metadata or an application/octet-stream image', { cause: error }), { status: 415 });
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return Object.assign(new VisorError('invalidInput', 'the metadata body is too large', { cause: error }), { status: 413 });
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new VisorError('invalidInput', e.message ?? 'bad request', { cause: error });
  return toVisorError(error);
}

export function toSignable(raw: IncomingMessage): SignableRequest {
  const url = raw.url ?? '/';
  const at = url.indexOf('?');
  const path = at < 0 ? url : url.slice(0, at);
  const query = at < 0 ? [] : [...new URLSearchParams(url.slice(at + 1))];
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw.headers)) if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
  return { method: raw.method ?? 'GET', path, query, headers };
}

export type { FastifyRequest };
