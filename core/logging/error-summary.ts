/**
 * An error as a log line shows it: its message and its kind or code, then the same for each
 * cause in turn — the whole chain on one line. Stack traces are for debugging and only come
 * along when asked (the logger asks at level debug): a failure seen by an operator is one line,
 * not a wall of frames repeated for every wrapper.
 */
export interface ErrorSummary {
  message: string;
  name?: string;
  /** Only when stacks were asked for. */
  stack?: string;
  kind?: string;
  code?: string;
  causes?: Omit<ErrorSummary, 'causes'>[];
}

/** Causes followed at most: a chain longer than this is a loop or a bug. */
const maxCauses = 8;

export function isErrorLike(value: unknown): value is Error {
  return (
    value instanceof Error ||
    (typeof value === 'object' &&
      value !== null &&
      typeof (value as Error).message === 'string' &&
      typeof (value as Error).stack === 'string')
  );
}

export function summarizeError(error: Error, options: { stacks?: boolean } = {}): ErrorSummary {
  const causes: Omit<ErrorSummary, 'causes'>[] = [];
  const seen = new Set<unknown>([error]);
  let next = causeOf(error);
  while (next !== undefined && causes.length < maxCauses && !seen.has(next)) {
    seen.add(next);
    causes.push(one(next, options.stacks));
    next = isErrorLike(next) ? causeOf(next) : undefined;
  }
  return { ...one(error, options.stacks), ...(causes.length > 0 ? { causes } : {}) };
}

/**
 * What a retry (not yet a failure) logs: the summary without stacks at any level, so that the
 * failure's own line is the one place its stack can appear.
 */
export function errorReason(error: unknown): ErrorSummary {
  return isErrorLike(error) ? summarizeError(error) : { message: String(error) };
}

/** The summary as text: `kind: message (code) <- cause (code) <- ...`. */
export function describeErrorSummary(summary: ErrorSummary): string {
  const part = (s: Omit<ErrorSummary, 'causes'>) =>
    `${s.kind ? `${s.kind}: ` : ''}${s.message}${s.code ? ` (${s.code})` : ''}`;
  return [part(summary), ...(summary.causes ?? []).map(part)].join(' <- ');
}

function one(error: unknown, stacks = false): Omit<ErrorSummary, 'causes'> {
  if (!isErrorLike(error)) return { message: String(error) };
  const e = error as Error & { kind?: unknown; code?: unknown; errno?: unknown };
  const out: Omit<ErrorSummary, 'causes'> = { message: e.message };
  if (e.name && e.name !== 'Error' && e.name !== 'VisorError') out.name = e.name;
  if (typeof e.kind === 'string') out.kind = e.kind;
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = String(e.code);
  if (stacks && e.stack) out.stack = e.stack;
  return out;
}

function causeOf(error: Error): unknown {
  if (error.cause !== undefined) return error.cause;
  // An AggregateError (a connection tried on several addresses) has its reasons in `errors`.
  const errors = (error as { errors?: unknown }).errors;
  return Array.isArray(errors) && errors.length > 0 ? errors[0] : undefined;
}
