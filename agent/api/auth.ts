import { createHash, timingSafeEqual } from 'node:crypto';
import type { ReplayRepository, UserRepository } from '../../core/catalog/port.js';
import type { SecretBox } from '../../core/auth/secret-box.js';
import { VisorError } from '../../core/errors.js';
import {
  DATE_HEADER,
  NONCE_HEADER,
  parseAuthorization,
  parseSigningDate,
  signature,
  signaturesEqual,
  trailerSignature,
  type SignableRequest,
} from '../../core/auth/signing.js';
import type { Caller } from '../service/access.js';

export interface AuthenticatorOptions {
  users: UserRepository;
  /** Where accepted signatures are remembered: the catalog, shared by every server on it. */
  replays: ReplayRepository;
  box: SecretBox;
  /** Accepted difference between the request's date and ours, in seconds. */
  clockSkewSeconds: number;
  now?: () => number;
}

/** A request that passed: who sent it, and how to check what it signs later (a streamed body's trailer). */
export interface Authenticated {
  caller: Caller;
  /** True when `signature` is the trailer signature of a body with this sha256, sent with this request. */
  verifyTrailer(sha256: string, signature: string): boolean;
}

/**
 * Checks signed requests: a known access key, a signature over the canonical request made with
 * that user's secret, a date within the clock-skew window, and a signature not seen before.
 * Seen signatures are kept in the catalog until they fall out of the window, so a captured
 * request cannot be replayed — not within the window, not after a restart, not against
 * another server on the same catalog.
 */
export class Authenticator {
  readonly #o: AuthenticatorOptions;
  readonly #now: () => number;
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

  /**
   * A sign-in with the keys themselves (the dashboard): the caller whose secret key this is.
   * One message for an unknown access key and a wrong secret, so that neither is confirmed.
   */
  async checkKeys(accessKey: string, secretKey: string): Promise<Caller> {
    const refused = new VisorError('auth', 'wrong access key or secret key');
    if (accessKey.length === 0 || accessKey.length > 128 || secretKey.length > 256) throw refused;
    const user = await this.#o.users.findByAccessKey(accessKey);
    // Compared as digests: equal lengths for timingSafeEqual, and no early exit on the first byte.
    const digest = (text: string) => createHash('sha256').update(text).digest();
    const expected = user ? this.#o.box.open(user.sealedSecret) : '';
    const same = timingSafeEqual(digest(expected), digest(secretKey));
    if (!user || !same) throw refused;
    return { id: user.id, name: user.name, admin: user.admin };
  }

  async authenticate(request: SignableRequest): Promise<Authenticated> {
    const credentials = parseAuthorization(request.headers['authorization']);
    if (!credentials) {
      throw new VisorError(
        'auth',
        request.headers['authorization']
          ? 'malformed Authorization header (expected VISOR-HMAC-SHA256 Credential=..., Signature=...)'
          : 'this request is not signed: send your access key and a signature (see `visor help`)',
      );
    }
    const nonce = request.headers[NONCE_HEADER];
    if (!nonce || !/^[A-Za-z0-9_-]{16,64}$/.test(nonce))
      throw new VisorError(
        'auth',
        `missing or malformed ${NONCE_HEADER} header (16 to 64 random letters/digits per request)`,
      );
    const date = parseSigningDate(request.headers[DATE_HEADER]);
    if (!date)
      throw new VisorError('auth', `missing or malformed ${DATE_HEADER} header (expected e.g. 20261122T010203Z)`);
    const now = this.#now();
    const skewMs = this.#o.clockSkewSeconds * 1000;
    if (Math.abs(now - date.getTime()) > skewMs) {
      throw new VisorError(
        'forbidden',
        `the request's date ${date.toISOString()} is more than ${this.#o.clockSkewSeconds}s ` +
          `away from the server's clock (expired, or a clock is wrong)`,
      );
    }
    const user = await this.#o.users.findByAccessKey(credentials.accessKey);
    if (!user) throw new VisorError('auth', `unknown access key ${credentials.accessKey}`);
    const secret = this.#secretOf(user.sealedSecret);
    const expected = signature(secret, request);
    if (!signaturesEqual(expected, credentials.signature)) {
      throw new VisorError(
        'forbidden',
        'the signature does not match the request (wrong secret key, or the request was altered)',
      );
    }
    // Only signatures that verified are recorded: nobody without a key can fill the memory.
    // Past date + skew the request fails the date check above, so the entry may go then.
    if (!(await this.#o.replays.remember(credentials.signature, date.getTime() + skewMs, now))) {
      throw new VisorError('forbidden', 'this exact request was already received (replayed)');
    }
    return {
      caller: { id: user.id, name: user.name, admin: user.admin },
      verifyTrailer: (sha256, given) => signaturesEqual(trailerSignature(secret, credentials.signature, sha256), given),
    };
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
}
