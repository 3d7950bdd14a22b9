/**
 * Keeps secrets out of log lines. Two nets: values under secret-looking keys are masked
 * wherever they appear in structured metadata, and known secret values (registered from the
 * config and from credentials as they are loaded) are masked inside any string, messages included.
 *
 * A known secret that could also be an ordinary word — letters only, or equal to a name used
 * elsewhere in the config (an adapter, a cloud, a store named like the password) — is masked
 * only where it stands as a value: after a secret-looking key (`password=…`, `"token": "…"`,
 * `secret …`), after an auth scheme (`Bearer …`), in a URL's userinfo. Masking it everywhere
 * would turn every mention of that adapter or word into `***`.
 */
export const secretKeyPattern = new RegExp(
  [
    'pass(word|wd|phrase)?$',
    'secret',
    'token',
    'authorization',
    'credential',
    'cookie',
    'private[-_]?key',
    'api[-_]?key',
    'session[-_]?key',
    '^signature$',
  ].join('|'),
  'i',
);

export const MASK = '***';

/**
 * What may stand right before a secret value in free text: a secret-looking key or an auth
 * scheme, then `:`, `=`, quotes or spaces.
 */
const valueLead =
  '(?:pass(?:word|wd|phrase)?|secret|token|authorization|credentials?|cookie|private[-_]?key|' +
  String.raw`api[-_]?key|session[-_]?key|signature|bearer|basic)["']?[\s:=]+["']?`;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class SecretRegistry {
  readonly #values = new Set<string>();
  /** Non-secret words of the config (names, keys, plain values): a secret equal to one is ambiguous. */
  readonly #plain = new Set<string>();
  readonly #valueOnly = new Map<string, RegExp>();

  /** Remembers a secret value; too-short values are ignored (masking them would mangle text). */
  add(value: string | undefined | null): void {
    if (typeof value === 'string' && value.length >= 4) this.#values.add(value);
  }

  /** Remembers a word the config uses as a plain name or value (never masked as such). */
  addPlain(value: string): void {
    if (value.length >= 4) this.#plain.add(value);
  }

  get size(): number {
    return this.#values.size;
  }

  maskText(text: string): string {
    let out = text;
    for (const secret of this.#values) {
      if (!out.includes(secret) && !out.includes(encodeURIComponent(secret))) continue;
      if (this.#ambiguous(secret)) {
        out = out.replace(this.#valueOnlyPattern(secret), MASK);
        continue;
      }
      if (out.includes(secret)) out = out.split(secret).join(MASK);
      // The same secret as it appears URL-encoded (in query strings and userinfo).
      const encoded = encodeURIComponent(secret);
      if (encoded !== secret && out.includes(encoded)) out = out.split(encoded).join(MASK);
    }
    return out.replace(/(\/\/[^/\s:@]+:)[^/\s@]+@/g, `$1${MASK}@`);
  }

  #ambiguous(secret: string): boolean {
    return /^[A-Za-z]+$/.test(secret) || this.#plain.has(secret);
  }

  /** The secret (or its URL encoding) where it stands as a value, as a whole token. */
  #valueOnlyPattern(secret: string): RegExp {
    let pattern = this.#valueOnly.get(secret);
    if (!pattern) {
      const alternatives = [...new Set([secret, encodeURIComponent(secret)])].map(escapeRegExp).join('|');
      pattern = new RegExp(`(?<=${valueLead})(?:${alternatives})(?![A-Za-z0-9])`, 'gi');
      this.#valueOnly.set(secret, pattern);
    }
    pattern.lastIndex = 0;
    return pattern;
  }

  /** Deep copy of `value` with secrets masked; cycles and depth are bounded. */
  redact(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
    if (typeof value === 'string') return this.maskText(value);
    if (value === null || typeof value !== 'object') return value;
    if (depth > 8 || seen.has(value)) return '[…]';
    seen.add(value);
    if (value instanceof Error) {
      const out: Record<string, unknown> = { name: value.name, message: this.maskText(value.message) };
      if ('kind' in value) out['kind'] = (value as { kind: unknown }).kind;
      if (value.stack) out['stack'] = this.maskText(value.stack);
      if (value.cause !== undefined) out['cause'] = this.redact(value.cause, depth + 1, seen);
      return out;
    }
    if (Array.isArray(value)) return value.map((v) => this.redact(v, depth + 1, seen));
    if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      out[key] =
        secretKeyPattern.test(key) && v !== undefined && v !== null && v !== ''
          ? MASK
          : this.redact(v, depth + 1, seen);
    }
    return out;
  }
}

/**
 * Collects the values found under secret-looking keys anywhere in a config tree, and the
 * config's other words (keys, names, plain values) that a secret might happen to equal.
 */
export function collectSecrets(value: unknown, registry: SecretRegistry, underSecretKey = false): void {
  if (typeof value === 'string') {
    if (underSecretKey) registry.add(value);
    else registry.addPlain(value);
  } else if (Array.isArray(value)) {
    for (const v of value) collectSecrets(v, registry, underSecretKey);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      registry.addPlain(key);
      collectSecrets(v, registry, underSecretKey || secretKeyPattern.test(key));
    }
  }
}
