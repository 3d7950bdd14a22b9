import { randomBytes } from 'node:crypto';
import type { ContentSource } from '../core/iaas/port.js';

interface Entry {
  source: ContentSource;
  expires: number;
}

/**
 * Serves image bytes to clouds that fetch images themselves (OpenNebula's PATH=URL): each
 * upload gets a URL with its own unguessable token, valid only while that upload runs (revoked
 * when the action ends, and after an hour at most). The cloud may read it more than once while
 * it lasts: oned stats the URL before it copies it.
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

  take(token: string): ContentSource | undefined {
    const entry = this.#entries.get(token);
    if (!entry || entry.expires < Date.now()) {
      this.#entries.delete(token);
      return undefined;
    }
    return entry.source;
  }
}
