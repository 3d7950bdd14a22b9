import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { UserRepository } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import type { Caller } from '../service/access.js';

export const SESSION_COOKIE = 'visor_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface SessionOptions {
  users: UserRepository;
  /** A session ends this long after sign-in, used or not. */
  lifetimeMs?: number;
  /** A session unused this long ends. */
  idleMs?: number;
  /** Sessions kept at most; the oldest go first. */
  maxSessions?: number;
  now?: () => number;
}

interface Session {
  userId: string;
  csrf: string;
  expiresAt: number;
  lastUsed: number;
}

/** What a signed-in browser is: the caller (read fresh from the user record) and its CSRF token. */
export interface ActiveSession {
  caller: Caller;
  csrf: string;
}

const hashOf = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * Dashboard sessions, in this server's memory: a random token in an HttpOnly cookie, and a
 * CSRF token the page sends back on every change. Only a digest of the token is kept, so a
 * dump of this memory signs nobody in. The user is read again on every request: a removed
 * user's sessions end at once, and a changed admin flag applies at once. A restart signs
 * everyone out, which is the safe side.
 */
export class SessionStore {
  readonly #sessions = new Map<string, Session>();
  readonly #users: UserRepository;
  readonly #lifetimeMs: number;
  readonly #idleMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: SessionOptions) {
    this.#users = options.users;
    this.#lifetimeMs = options.lifetimeMs ?? 12 * 3_600_000;
    this.#idleMs = options.idleMs ?? 3_600_000;
    this.#max = options.maxSessions ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  get lifetimeSeconds(): number {
    return Math.floor(this.#lifetimeMs / 1000);
  }

  /** A new session for a signed-in caller: the cookie's token and the CSRF token. */
  open(caller: Caller): { token: string; csrf: string } {
    if (!caller.id) throw new VisorError('internal', 'a session needs a catalog user');
    const now = this.#now();
    this.#sweep(now);
    while (this.#sessions.size >= this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
    const token = randomBytes(32).toString('base64url');
    const csrf = randomBytes(24).toString('base64url');
    this.#sessions.set(hashOf(token), { userId: caller.id, csrf, expiresAt: now + this.#lifetimeMs, lastUsed: now });
    return { token, csrf };
  }

  /** The session a cookie header names, if it is still valid. */
  async find(cookieHeader: string | undefined): Promise<ActiveSession | undefined> {
    const token = cookieValue(cookieHeader, SESSION_COOKIE);
    if (!token || token.length > 100) return undefined;
    const key = hashOf(token);
    const session = this.#sessions.get(key);
    if (!session) return undefined;
    const now = this.#now();
    if (now >= session.expiresAt || now - session.lastUsed >= this.#idleMs) {
      this.#sessions.delete(key);
      return undefined;
    }
    const user = await this.#users.findById(session.userId);
    if (!user) {
      this.#sessions.delete(key);
      return undefined;
    }
    session.lastUsed = now;
    return { caller: { id: user.id, name: user.name, admin: user.admin }, csrf: session.csrf };
  }

  /** Ends the session a cookie header names (sign-out). */
  close(cookieHeader: string | undefined): void {
    const token = cookieValue(cookieHeader, SESSION_COOKIE);
    if (token) this.#sessions.delete(hashOf(token));
  }

  #sweep(now: number): void {
    for (const [key, session] of this.#sessions) {
      if (now >= session.expiresAt || now - session.lastUsed >= this.#idleMs) this.#sessions.delete(key);
    }
  }
}

/** True when `given` is the session's CSRF token. */
export function csrfMatches(session: ActiveSession, given: string | string[] | undefined): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(session.csrf).digest();
  return timingSafeEqual(a, b);
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

/** The Set-Cookie value of a session (empty token and age 0: the cookie is removed). */
export function sessionCookie(token: string, maxAgeSeconds: number, secure: boolean): string {
  const parts = [`${SESSION_COOKIE}=${token}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${maxAgeSeconds}`];
  if (secure) parts.push('Secure');
  return parts.join('; ');
}
