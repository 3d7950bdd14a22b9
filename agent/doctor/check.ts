import { VisorError } from '../../core/errors.js';

export type Verdict = 'ok' | 'warn' | 'fail';

/** One line of `visor doctor`: what was checked, the verdict, and what to do when it is not ok. */
export interface CheckResult {
  check: string;
  verdict: Verdict;
  detail: string;
  /** What to do about a warning or a failure. */
  fix?: string;
  ms: number;
}

export interface DoctorCheck {
  name: string;
  /** Resolves to the ok line's detail, or to a warning; throws to fail. */
  run(signal: AbortSignal): Promise<string | Warning>;
  /** What to do when it throws (the error says what went wrong). */
  fix: string;
}

export class Warning {
  constructor(
    readonly detail: string,
    readonly fix: string,
  ) {}
}

/** Runs a check under its own deadline: a check that hangs fails, it does not hold up the others. */
export async function runCheck(check: DoctorCheck, deadlineMs: number): Promise<CheckResult> {
  const controller = new AbortController();
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new VisorError('timeout', `no answer within ${Math.round(deadlineMs / 1000)} s`);
      controller.abort(error);
      reject(error);
    }, deadlineMs);
  });
  const ms = () => Math.round(performance.now() - started);
  try {
    const outcome = await Promise.race([check.run(controller.signal), deadline]);
    if (outcome instanceof Warning)
      return { check: check.name, verdict: 'warn', detail: outcome.detail, fix: outcome.fix, ms: ms() };
    return { check: check.name, verdict: 'ok', detail: outcome, ms: ms() };
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return { check: check.name, verdict: 'fail', detail, fix: check.fix, ms: ms() };
  } finally {
    clearTimeout(timer);
  }
}

export function worst(results: readonly CheckResult[]): Verdict {
  if (results.some((r) => r.verdict === 'fail')) return 'fail';
  return results.some((r) => r.verdict === 'warn') ? 'warn' : 'ok';
}
