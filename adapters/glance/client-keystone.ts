import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { AxiosInstance, AxiosResponse } from 'axios';
import axios from '../../core/wire/axios.js';
import { isRetryable, VisorError } from '../../core/errors.js';
import { httpError } from '../../core/wire/http.js';
import {
  keystoneTokenResponseSchema,
  parsePayload,
  type KeystoneCatalogEntry,
  type KeystoneInterface,
} from './schema.js';

/** How visor proves who it is to Keystone v3 (secrets are registered by the plugin facade). */
export type KeystoneCredentials =
  | {
      type: 'password';
      username: string;
      password: string;
      userDomainName: string;
      /** Exactly one of projectName / projectId: Glance needs a project-scoped token. */
      projectName?: string;
      projectId?: string;
      projectDomainName: string;
    }
  | {
      type: 'applicationCredential';
      /** By id, or by name together with its user (name + domain, or id). */
      id?: string;
      name?: string;
      username?: string;
      userId?: string;
      userDomainName?: string;
      secret: string;
    };

export interface KeystoneClock {
  now(): number;
}

export interface KeystoneSessionOptions {
  /** Keystone's URL, with or without the trailing `/v3`. */
  authUrl: string;
  credentials: KeystoneCredentials;
  /** Which catalog endpoint to use for services. */
  interface: KeystoneInterface;
  /** Region of the endpoints; required only when the catalog offers several. */
  region?: string;
  httpAgent?: HttpAgent;
  httpsAgent?: HttpsAgent;
  timeoutMs: number;
  /** Renew this long before expiry (capped at half the token's lifetime). Default 5 minutes. */
  renewBeforeMs?: number;
  /** Injected in tests to bring a token close to its expiry without waiting an hour. */
  clock?: KeystoneClock;
}

/** A project-scoped token as visor uses it. `id` is the X-Subject-Token: a secret. */
export interface KeystoneToken {
  readonly id: string;
  /** On the session's clock (the server's lifetime applied to our clock: immune to skew). */
  readonly renewAt: number;
  readonly expiresAt: number;
  readonly roles: readonly string[];
  readonly projectId: string | undefined;
  readonly userId: string | undefined;
  readonly catalog: readonly KeystoneCatalogEntry[];
}

const defaultRenewBeforeMs = 5 * 60_000;

/**
 * One Keystone v3 session: a token obtained once and reused by every call until shortly before
 * it expires, renewed early, or renewed once when a service answers 401 (revoked). Concurrent
 * callers share one authentication in flight.
 */
export class KeystoneSession {
  readonly #options: KeystoneSessionOptions;
  readonly #http: AxiosInstance;
  readonly #clock: KeystoneClock;
  readonly #tokensUrl: string;
  #current: KeystoneToken | undefined;
  #pending: Promise<KeystoneToken> | undefined;
  #authentications = 0;

  constructor(options: KeystoneSessionOptions) {
    this.#options = options;
    this.#clock = options.clock ?? { now: () => Date.now() };
    this.#tokensUrl = `${keystoneV3Url(options.authUrl)}/auth/tokens`;
    this.#http = axios.create({
      timeout: options.timeoutMs,
      maxRedirects: 0,
      ...(options.httpAgent ? { httpAgent: options.httpAgent } : {}),
      ...(options.httpsAgent ? { httpsAgent: options.httpsAgent } : {}),
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    });
  }

  /** How many times this session asked Keystone for a token (token reuse is observable). */
  get authentications(): number {
    return this.#authentications;
  }

  /** A token valid for a while yet: the cached one, or a fresh one. */
  async token(): Promise<KeystoneToken> {
    const current = this.#current;
    if (current && this.#clock.now() < current.renewAt) return current;
    this.#pending ??= this.#authenticate().finally(() => {
      this.#pending = undefined;
    });
    try {
      return await this.#pending;
    } catch (error) {
      // Renewing early failed because Keystone is unreachable: the old token still works for a while.
      if (current && this.#current === current && isRetryable(error) && this.#clock.now() < current.expiresAt)
        return current;
      throw error;
    }
  }

  /** Forgets `tokenId` (a service refused it), so the next `token()` authenticates again. */
  invalidate(tokenId: string): void {
    if (this.#current?.id === tokenId) this.#current = undefined;
  }

  /** The URL of a service from the token's catalog, by type, the configured interface and region. */
  endpoint(token: KeystoneToken, serviceType: string): string {
    return findEndpoint(token.catalog, serviceType, this.#options.interface, this.#options.region);
  }

  close(): void {
    this.#current = undefined;
  }

  async #authenticate(): Promise<KeystoneToken> {
    const who = describe(this.#options.credentials);
    const sentAt = this.#clock.now();
    this.#authentications++;
    let response: AxiosResponse;
    try {
      response = await this.#http.post(this.#tokensUrl, authRequestBody(this.#options.credentials), {
        validateStatus: (s) => s === 201 || s === 200,
      });
    } catch (error) {
      const mapped = httpError(`Keystone at ${this.#tokensUrl}: authenticating ${who}`, error);
      if (mapped.kind === 'notFound')
        throw new VisorError('config', `${mapped.message} (is authUrl the Keystone v3 URL?)`, { cause: mapped });
      throw mapped;
    }
    const id = response.headers['x-subject-token'];
    if (typeof id !== 'string' || id === '')
      throw new VisorError(
        'invalidResponse',
        `Keystone at ${this.#tokensUrl}: authenticating ${who}: no X-Subject-Token header in the answer`,
      );
    const { token } = parsePayload(
      keystoneTokenResponseSchema,
      response.data,
      `Keystone at ${this.#tokensUrl}: authenticating ${who}`,
    );
    if (!token.catalog || token.catalog.length === 0) {
      throw new VisorError(
        'config',
        `Keystone gave ${who} a token without a service catalog: ` +
          `the token must be scoped to a project (give projectName or projectId)`,
      );
    }
    const expires = Date.parse(token.expires_at);
    const issued = token.issued_at ? Date.parse(token.issued_at) : NaN;
    // The server's own lifetime (expires - issued), counted from when we asked: clock skew between
    // us and Keystone cannot make us use an expired token.
    const lifetime = Number.isNaN(issued) ? expires - Date.now() : expires - issued;
    const margin = Math.min(this.#options.renewBeforeMs ?? defaultRenewBeforeMs, lifetime / 2);
    const next: KeystoneToken = {
      id,
      expiresAt: sentAt + lifetime,
      renewAt: sentAt + lifetime - margin,
      roles: (token.roles ?? []).map((r) => r.name ?? r.id),
      projectId: token.project?.id,
      userId: token.user?.id,
      catalog: token.catalog,
    };
    this.#current = next;
    return next;
  }
}

/** `http://host:5000`, `.../v3` and `.../v3/` all name the same Keystone v3 API. */
export function keystoneV3Url(authUrl: string): string {
  const trimmed = authUrl.replace(/\/+$/, '');
  return /\/v3$/.test(trimmed) ? trimmed : `${trimmed}/v3`;
}

/** The body of POST /v3/auth/tokens for these credentials (password: project-scoped). */
export function authRequestBody(credentials: KeystoneCredentials): unknown {
  if (credentials.type === 'password') {
    const project =
      credentials.projectId !== undefined
        ? { id: credentials.projectId }
        : { name: credentials.projectName, domain: { name: credentials.projectDomainName } };
    return {
      auth: {
        identity: {
          methods: ['password'],
          password: {
            user: {
              name: credentials.username,
              domain: { name: credentials.userDomainName },
              password: credentials.password,
            },
          },
        },
        scope: { project },
      },
    };
  }
  // An application credential is scoped already: no `scope` (Keystone refuses one).
  const user =
    credentials.userId !== undefined
      ? { id: credentials.userId }
      : credentials.username !== undefined
        ? { name: credentials.username, domain: { name: credentials.userDomainName ?? 'Default' } }
        : undefined;
  const appCredential =
    credentials.id !== undefined
      ? { id: credentials.id, secret: credentials.secret }
      : { name: credentials.name, secret: credentials.secret, ...(user ? { user } : {}) };
  return { auth: { identity: { methods: ['application_credential'], application_credential: appCredential } } };
}

/**
 * Picks a service endpoint from a token's catalog. Without a region, the endpoints of the
 * interface must all be in one region (or share one URL); otherwise the choice would be a
 * guess, so the caller is told to configure a region.
 */
export function findEndpoint(
  catalog: readonly KeystoneCatalogEntry[],
  serviceType: string,
  iface: KeystoneInterface,
  region?: string,
): string {
  const services = catalog.filter((s) => s.type === serviceType);
  if (services.length === 0) {
    throw new VisorError(
      'config',
      `the Keystone catalog has no "${serviceType}" service (it ` +
        `offers: ${[...new Set(catalog.map((s) => s.type))].join(', ') || 'nothing'})`,
    );
  }
  const endpoints = services.flatMap((s) => s.endpoints).filter((e) => e.interface === iface);
  const inRegion =
    region === undefined ? endpoints : endpoints.filter((e) => e.region_id === region || e.region === region);
  if (inRegion.length === 0) {
    const offered = services.flatMap((s) => s.endpoints).map((e) => `${e.interface}@${e.region_id ?? e.region ?? '?'}`);
    throw new VisorError(
      'config',
      `the Keystone catalog has no ${iface} "${serviceType}" ` +
        `endpoint${region !== undefined ? ` in region ${region}` : ''} (it ` +
        `offers: ${[...new Set(offered)].join(', ')})`,
    );
  }
  const urls = [...new Set(inRegion.map((e) => e.url.replace(/\/+$/, '')))];
  if (urls.length > 1) {
    const regions = [...new Set(inRegion.map((e) => e.region_id ?? e.region ?? '?'))];
    throw new VisorError(
      'config',
      `the Keystone catalog offers several ${iface} "${serviceType}" ` +
        `endpoints (regions ${regions.join(', ')}): set the region option`,
    );
  }
  return urls[0]!;
}

function describe(credentials: KeystoneCredentials): string {
  if (credentials.type === 'password') return `user "${credentials.username}" (domain ${credentials.userDomainName})`;
  return `application credential "${credentials.id ?? credentials.name}"`;
}
