import { isVisorError, type ErrorKind } from '../../core/errors.js';

/** Exit codes scripts can rely on. */
export const ExitCode = {
  ok: 0,
  /** Something failed (a backend, a transfer, a bug). */
  failure: 1,
  /** The command line, the config or the input was wrong: fix it and try again. */
  usage: 2,
  /** Some targets or images succeeded and some failed. */
  partial: 3,
  /** Credentials were refused. */
  auth: 4,
  notFound: 5,
  conflict: 6,
} as const;

const byKind: Partial<Record<ErrorKind, number>> = {
  invalidInput: ExitCode.usage,
  config: ExitCode.usage,
  plugin: ExitCode.usage,
  unsafe: ExitCode.usage,
  tooLarge: ExitCode.usage,
  auth: ExitCode.auth,
  forbidden: ExitCode.auth,
  notFound: ExitCode.notFound,
  conflict: ExitCode.conflict,
};

export function exitCodeFor(error: unknown): number {
  return isVisorError(error) ? (byKind[error.kind] ?? ExitCode.failure) : ExitCode.failure;
}
