import type { UserRepository } from '../../core/catalog/port.js';
import type { SecretBox } from '../../core/auth/secret-box.js';
import { VisorError } from '../../core/errors.js';
import {
  DATE_HEADER,
  NONCE_HEADER,
  parseAuthorization,
  parseSigningDate,
  signature,
  signaturesEqual,
  type SignableRequest,
} from '../../core/auth/signing.js';
import type { Caller } from '../service/access.js';

export interface AuthenticatorOptions {
  users: UserRepository;
  box: SecretBox;
  /** Accepted difference between the request's date and ours, in seconds. */
  clockSkewSeconds: number;
  now?: () => number;
}

/**
 * Checks signed requests: a known access key, a signature over the canonical request made with
 * that user's secret, a date within the clock-skew window, and a signature not seen before
 * (a captured request cannot be replayed, not even within the window).
 */
export class Authenticator {
  readonly #o: AuthenticatorOptions;
  readonly #now: () => number;
  /** Signatures accepted recently, with when they stop mattering (their date + skew). */
  readonly #seen = new Map<string, number>();
  #nextPrune = 0;
  /**
   * Opened secrets by their sealed form: opening (AES-GCM) costs more than the rest of the check.
   * The user is still read from the catalog on every request, so a removed user or a new key
   * takes effect at once; a new key is a new sealed form.
   */
  readonly #opened = new Map<string, string>();

  constructor(options: AuthenticatorOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  async authenticate(request: SignableRequest): Promise<Caller> {
    const credentials = parseAuthorization(request.headers['authorization']);
    if (!credentials) {
      throw new VisorError('auth', request.headers['authorization'] ? 'malformed Authorization header (expected VISOR-HMAC-SHA256 Credential=..., Signature=...)' : 'this request is not signed: send your access key and a signature (see `visor help`)');
    }
    const nonce = request.headers[NONCE_HEADER];
    if (!nonce || !/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) throw new VisorError('auth', `missing or malformed ${NONCE_HEADER} header (16 to 64 random letters/digits per request)`);
    const date = parseSigningDate(request.headers[DATE_HEADER]);
    if (!date) throw new VisorError('auth', `missing or malformed ${DATE_HEADER} header (expected e.g. 20261122T010203Z)`);
    const now = this.#now();
    const skewMs = this.#o.clockSkewSeconds * 1000;
    if (Math.abs(now - date.getTime()) > skewMs) {
      throw new VisorError('forbidden', `the request's date ${date.toISOString()} is more than ${this.#o.clockSkewSeconds}s away from the server's clock (expired, or a clock is wrong)`);
    }
    const user = await this.#o.users.findByAccessKey(credentials.accessKey);
    if (!user) throw new VisorError('auth', `unknown access key ${credentials.accessKey}`);
    const expected = signature(this.#secretOf(user.sealedSecret), request);
    if (!signaturesEqual(expected, credentials.signature)) {
      throw new VisorError('forbidden', 'the signature does not match the request (wrong secret key, or the request was altered)');
    }
    this.#prune(now);
    if (this.#seen.has(credentials.signature)) throw new VisorError('forbidden', 'this exact request was already received (replayed)');
    this.#seen.set(credentials.signature, date.getTime() + skewMs);
    return { name: user.name, admin: user.admin };
  }

  #secretOf(sealed: string): string {
    let secret = this.#opened.get(sealed);
    if (secret === undefined) {
      secret = this.#o.box.open(sealed);
      if (this.#opened.size >= 10_000) this.#opened.clear();
      this.#opened.set(sealed, secret);
    }
    return secret;
  }

  #prune(now: number): void {
    // At most once a second: a sweep per request is O(signatures seen), quadratic under load.
    if (this.#seen.size < 1024 || now < this.#nextPrune) return;
    this.#nextPrune = now + 1000;
    for (const [sig, until] of this.#seen) if (until < now) this.#seen.delete(sig);
  }
}
