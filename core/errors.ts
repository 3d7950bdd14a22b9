/**
 * One error type for the whole product, told apart by `kind` (STYLE.md §3). Callers decide
 * (retry, exit code, HTTP status) by reading the kind, never the message.
 */
export const errorKinds = [
  'invalidInput', // the caller's input is wrong (API body, CLI argument, image metadata)
  'config', // the configuration file is wrong
  'notFound',
  'conflict', // stale revision, duplicate id, wrong state for the operation
  'auth', // not authenticated: missing, bad or expired credentials / signature
  'forbidden', // authenticated but not allowed
  'unavailable', // a backend is down or overloaded; worth retrying
  'timeout', // an operation took longer than its deadline; worth retrying
  'invalidResponse', // a peer answered something we cannot accept
  'integrity', // size or checksum mismatch
  'unsafe', // content rejected by the safety inspection (backing files, format lies)
  'tooLarge', // over a size limit or a storage quota
  'unsupported', // the implementation does not offer this capability
  'plugin', // a plugin is missing or invalid
  'internal', // a bug
] as const;
export type ErrorKind = (typeof errorKinds)[number];

export interface VisorErrorOptions {
  cause?: unknown;
  /** Structured facts about the failure (field paths, ids); never secrets. */
  details?: Record<string, unknown>;
}

// A brand instead of instanceof: a plugin package may carry its own copy of this module.
const brand = Symbol.for('visor.error');

export class VisorError extends Error {
  override readonly name = 'VisorError';
  readonly [brand] = true;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;

  constructor(kind: ErrorKind, message: string, options: VisorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.details = options.details;
  }
}

export function isVisorError(error: unknown, kind?: ErrorKind): error is VisorError {
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { [brand]?: unknown })[brand] === true &&
    (kind === undefined || (error as VisorError).kind === kind)
  );
}

/** Kinds a caller may retry with backoff; everything else is terminal. */
export const retryableKinds: ReadonlySet<ErrorKind> = new Set(['unavailable', 'timeout']);

export function isRetryable(error: unknown): boolean {
  return isVisorError(error) && retryableKinds.has(error.kind);
}

/** Kinds that are the user's doing: shown as one line, without a stack trace. */
export const userErrorKinds: ReadonlySet<ErrorKind> = new Set([
  'invalidInput',
  'config',
  'notFound',
  'conflict',
  'auth',
  'forbidden',
  'unsafe',
  'tooLarge',
  'unsupported',
  'plugin',
  'integrity',
  'unavailable',
  'timeout',
]);

/** Wraps anything thrown into a VisorError, keeping VisorErrors as they are. */
export function toVisorError(error: unknown, kind: ErrorKind = 'internal'): VisorError {
  if (isVisorError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new VisorError(kind, message, { cause: error });
}

/** A field-level problem, used by every validator that reports all problems at once. */
export interface FieldIssue {
  /** Dotted path of the field, e.g. `checksums.sha256` or `clouds.prod.options.password`. */
  path: string;
  message: string;
}

export class ValidationError extends VisorError {
  readonly issues: readonly FieldIssue[];

  constructor(kind: 'invalidInput' | 'config', subject: string, issues: readonly FieldIssue[]) {
    super(kind, `${subject}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`, {
      details: { issues },
    });
    this.issues = issues;
  }
}
