import { randomBytes } from 'node:crypto';
import type { ContentSource } from '../core/iaas/port.js';

interface Entry {
  source: ContentSource;
  expires: number;
  /** Copies being sent: cut when the upload they serve ends (revoke), so none outlives it. */
  sending: Set<{ destroy(): void }>;
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
    const entry: Entry = { source, expires: Date.now() + 3_600_000, sending: new Set() };
    this.#entries.set(token, entry);
    const base = typeof this.baseUrl === 'function' ? this.baseUrl() : this.baseUrl;
    const revoke = () => {
      this.#entries.delete(token);
      // The upload ended (done, failed or aborted by a stopping agent): a cloud still reading gets
      // a cut connection, and a server that closes does not wait for a copy nobody needs.
      for (const response of entry.sending) response.destroy();
      entry.sending.clear();
    };
    return { url: `${base.replace(/\/+$/, '')}/agent/content/${token}`, revoke };
  }

  /**
   * The content behind a token, while it is valid; `response`, the answer that will carry it, is
   * cut if the token is revoked before it ends.
   */
  take(
    token: string,
    response?: { destroy(): void; once(event: 'close', listener: () => void): unknown },
  ): ContentSource | undefined {
    const entry = this.#entries.get(token);
    if (!entry || entry.expires < Date.now()) {
      this.#entries.delete(token);
      return undefined;
    }
    if (response) {
      entry.sending.add(response);
      response.once('close', () => entry.sending.delete(response));
    }
    return entry.source;
  }
}
