import { randomBytes } from 'node:crypto';
import type { ContentSource } from '../core/iaas/port.js';

interface Entry {
  source: ContentSource;
  expires: number;
}

/**
 * Serves image bytes to clouds that fetch images themselves (OpenNebula's PATH=URL): each
 * upload gets a URL with a one-time token, valid until its first download starts or the action
 * ends (revoke), whichever comes first, and for an hour at most.
 */
export class ContentPublisher {
  readonly #entries = new Map<string, Entry>();

  /** `baseUrl` may be a function: the server's address is known only once it listens. */
  constructor(private readonly baseUrl: string | (() => string)) {}

  publish(source: ContentSource): { url: string; revoke(): void } {
    const token = randomBytes(24).toString('base64url');
    this.#entries.set(token, { source, expires: Date.now() + 3_600_000 });
    const base = typeof this.baseUrl === 'function' ? this.baseUrl() : this.baseUrl;
    return { url: `${base.replace(/\/+$/, '')}/agent/content/${token}`, revoke: () => this.#entries.delete(token) };
  }

  /** The source for a token; `consume` makes it the one and only use. */
  take(token: string, consume: boolean): ContentSource | undefined {
    const entry = this.#entries.get(token);
    if (!entry || entry.expires < Date.now()) {
      this.#entries.delete(token);
      return undefined;
    }
    if (consume) this.#entries.delete(token);
    return entry.source;
  }
}
