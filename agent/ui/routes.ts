import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { VisorError } from '../../core/errors.js';
import type { Authenticator } from '../api/auth.js';
import type { Caller } from '../service/access.js';
import { checkCsrf } from '../api/server.js';
import { type SessionStore, sessionCookie } from '../api/sessions.js';

export interface UiRoutesOptions {
  /** Undefined when auth is off (loopback development): everyone is the admin `anonymous`. */
  authenticator: Authenticator | undefined;
  sessions: SessionStore | undefined;
  /** Failed sign-ins per address and minute before the address must wait. */
  maxFailuresPerMinute?: number;
}

/** Paths the dashboard serves without a signature: its page, assets and sign-in. */
export const uiPublicPaths = ['/ui', '/ui/'] as const;

/**
 * No inline script or style, nothing from elsewhere: what an injected string could do is nil.
 * The page talks to this server only (connect-src 'self').
 */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const assetTypes: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** The assets, read once: they ship in the package beside this file (the build copies them). */
function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(assetTypes)) {
    const body = readFileSync(new URL(`./assets/${name}`, import.meta.url));
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return assets;
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply.headers({
    'content-security-policy': contentSecurityPolicy,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
  });
}

function send(request: FastifyRequest, reply: FastifyReply, asset: Asset): FastifyReply {
  securityHeaders(reply).header('etag', asset.etag).header('cache-control', 'no-cache');
  if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
  return reply.type(asset.type).send(asset.body);
}

/** The web dashboard (under /ui): its page and assets, sign-in and sign-out. Its data comes from the API. */
export function uiRoutes(options: UiRoutesOptions): FastifyPluginAsync {
  const assets = loadAssets();
  const failures = new Map<string, { count: number; until: number }>();
  const maxFailures = options.maxFailuresPerMinute ?? 10;
  const throttle = (address: string) => {
    const entry = failures.get(address);
    if (entry && entry.until > Date.now() && entry.count >= maxFailures) {
      const error = new VisorError('forbidden', 'too many failed sign-ins from this address: wait a minute');
      throw Object.assign(error, { status: 429 });
    }
  };
  const failed = (address: string) => {
    const now = Date.now();
    const entry = failures.get(address);
    if (!entry || entry.until <= now) failures.set(address, { count: 1, until: now + 60_000 });
    else entry.count++;
    if (failures.size > 10_000) for (const [key, e] of failures) if (e.until <= now) failures.delete(key);
  };

  return async (app) => {
    app.get('/ui', async (_request, reply) => securityHeaders(reply).redirect('/ui/', 301));
    app.get('/ui/', async (request, reply) => send(request, reply, assets.get('index.html')!));
    app.get<{ Params: { name: string } }>('/ui/assets/:name', async (request, reply) => {
      const asset = assets.get(request.params.name);
      if (!asset || request.params.name === 'index.html') throw new VisorError('notFound', 'no such asset');
      return send(request, reply, asset);
    });

    app.get('/ui/session', async (request, reply) => {
      securityHeaders(reply).header('cache-control', 'no-store');
      if (!options.authenticator) return { user: { name: 'anonymous', admin: true }, csrf: '', auth: false };
      const session = await options.sessions!.find(request.headers.cookie);
      // Not signed in is an answer, not a failure: the page then shows its sign-in form.
      if (!session) return { user: null, csrf: '', auth: true };
      return { user: { name: session.caller.name, admin: session.caller.admin }, csrf: session.csrf, auth: true };
    });

    app.post<{ Body: { accessKey?: unknown; secretKey?: unknown } }>('/ui/session', async (request, reply) => {
      securityHeaders(reply).header('cache-control', 'no-store');
      if (!options.authenticator)
        throw new VisorError('invalidInput', 'authentication is off: there is nothing to sign in to');
      const origin = request.headers.origin;
      if (origin !== undefined && origin !== `${request.protocol}://${request.host}`) {
        throw new VisorError('forbidden', 'a sign-in from another site is refused');
      }
      const { accessKey, secretKey } = request.body ?? {};
      if (typeof accessKey !== 'string' || typeof secretKey !== 'string' || !accessKey || !secretKey) {
        throw new VisorError('invalidInput', 'give an access key and a secret key');
      }
      throttle(request.ip);
      let caller: Caller;
      try {
        caller = await options.authenticator.checkKeys(accessKey.trim(), secretKey.trim());
      } catch (error) {
        failed(request.ip);
        throw error;
      }
      const sessions = options.sessions!;
      const { token, csrf } = await sessions.open(caller);
      void reply.header('set-cookie', sessionCookie(token, sessions.lifetimeSeconds, request.protocol === 'https'));
      return { user: { name: caller.name, admin: caller.admin }, csrf, auth: true };
    });

    app.post('/ui/session/end', async (request, reply) => {
      securityHeaders(reply).header('cache-control', 'no-store');
      const sessions = options.sessions;
      const session = sessions ? await sessions.find(request.headers.cookie) : undefined;
      if (sessions && session) {
        checkCsrf(request, session);
        await sessions.close(request.headers.cookie);
      }
      void reply.header('set-cookie', sessionCookie('', 0, request.protocol === 'https'));
      return reply.code(204).send();
    });
  };
}
