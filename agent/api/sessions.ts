import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { StateRepository, UserRepository } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import type { Caller } from '../service/access.js';

export const SESSION_COOKIE = 'visor_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface SessionOptions {
  users: UserRepository;
  /**
   * Where sessions are kept: the catalog's state (shared by every server on the catalog, so a
   * session works behind a balancer and survives a restart); this process's memory if absent.
   */
  state?: StateRepository;
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
  createdAt: number;
  /** Orders the sessions one process opened in the same millisecond. */
  serial: number;
  expiresAt: number;
  lastUsed: number;
}

/** What a signed-in browser is: the caller (read fresh from the user record) and its CSRF token. */
export interface ActiveSession {
  caller: Caller;
  csrf: string;
}

const PREFIX = 'session:';
const keyOf = (token: string) => `${PREFIX}${createHash('sha256').update(token).digest('hex')}`;

/** A process-local state, for a server without a shared catalog state (and for tests). */
class MemoryState implements StateRepository {
  readonly #entries = new Map<string, unknown>();
  async get<T>(key: string): Promise<T | undefined> {
    return this.#entries.get(key) as T | undefined;
  }
  async set(key: string, value: unknown): Promise<void> {
    this.#entries.set(key, value);
  }
  async delete(key: string): Promise<void> {
    this.#entries.delete(key);
  }
  async list<T>(prefix: string): Promise<[string, T][]> {
    return [...this.#entries].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)) as [
      string,
      T,
    ][];
  }
}

/**
 * Dashboard sessions: a random token in an HttpOnly cookie, and a CSRF token the page sends back
 * on every change. Kept in the catalog's state, so that every API server on the catalog knows
 * them (replicas behind a balancer) and a restart signs nobody out; only a digest of the token is
 * kept, so a copy of the catalog signs nobody in. The user is read again on every request: a
 * removed user's sessions end at once, and a changed admin flag applies at once. Sign-out ends a
 * session for every server.
 */
export class SessionStore {
  readonly #state: StateRepository;
  readonly #users: UserRepository;
  readonly #lifetimeMs: number;
  readonly #idleMs: number;
  readonly #max: number;
  readonly #now: () => number;
  #serial = 0;

  constructor(options: SessionOptions) {
    this.#users = options.users;
    this.#state = options.state ?? new MemoryState();
    this.#lifetimeMs = options.lifetimeMs ?? 12 * 3_600_000;
    this.#idleMs = options.idleMs ?? 3_600_000;
    this.#max = options.maxSessions ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  get lifetimeSeconds(): number {
    return Math.floor(this.#lifetimeMs / 1000);
  }

  /** A new session for a signed-in caller: the cookie's token and the CSRF token. */
  async open(caller: Caller): Promise<{ token: string; csrf: string }> {
    if (!caller.id) throw new VisorError('internal', 'a session needs a catalog user');
    const now = this.#now();
    await this.#sweep(now);
    const token = randomBytes(32).toString('base64url');
    const csrf = randomBytes(24).toString('base64url');
    const session: Session = {
      userId: caller.id,
      csrf,
      createdAt: now,
      serial: ++this.#serial,
      expiresAt: now + this.#lifetimeMs,
      lastUsed: now,
    };
    await this.#state.set(keyOf(token), session);
    return { token, csrf };
  }

  /** The session a cookie header names, if it is still valid. */
  async find(cookieHeader: string | undefined): Promise<ActiveSession | undefined> {
    const token = cookieValue(cookieHeader, SESSION_COOKIE);
    if (!token || token.length > 100) return undefined;
    const key = keyOf(token);
    const session = await this.#state.get<Session>(key);
    if (!session) return undefined;
    const now = this.#now();
    if (this.#ended(session, now)) {
      await this.#state.delete(key);
      return undefined;
    }
    const user = await this.#users.findById(session.userId);
    if (!user) {
      await this.#state.delete(key);
      return undefined;
    }
    // A write per request would cost the catalog more than the request: the last use is written
    // when it moved by a tenth of the idle time (the idle end is that much early at worst).
    if (now - session.lastUsed >= this.#idleMs / 10) await this.#state.set(key, { ...session, lastUsed: now });
    return { caller: { id: user.id, name: user.name, admin: user.admin }, csrf: session.csrf };
  }

  /** Ends the session a cookie header names (sign-out). */
  async close(cookieHeader: string | undefined): Promise<void> {
    const token = cookieValue(cookieHeader, SESSION_COOKIE);
    if (token) await this.#state.delete(keyOf(token));
  }

  #ended(session: Session, now: number): boolean {
    return now >= session.expiresAt || now - session.lastUsed >= this.#idleMs;
  }

  /** Ended sessions go, and the oldest while there are too many (sign-ins are rare and throttled). */
  async #sweep(now: number): Promise<void> {
    const live: [string, Session][] = [];
    for (const [key, session] of await this.#state.list<Session>(PREFIX)) {
      if (this.#ended(session, now)) await this.#state.delete(key);
      else live.push([key, session]);
    }
    live.sort(([, a], [, b]) => a.createdAt - b.createdAt || a.serial - b.serial);
    for (let i = 0; live.length - i >= this.#max; i++) await this.#state.delete(live[i]![0]);
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
