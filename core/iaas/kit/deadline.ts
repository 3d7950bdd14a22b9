import { isVisorError, VisorError } from '../../errors.js';

/** Why a deadline's signal aborted: its time ran out, or its caller gave up. */
export type DeadlineEnd = 'timeout' | 'aborted';

/** How an adapter words the outcomes of a deadline (see `Deadline.failure`). */
export interface FailureWords {
  timeout: () => string;
  aborted: () => string;
  /** A clearer error for a VisorError the call threw (wording only: keep the kind). */
  refine?: (error: VisorError) => VisorError;
  /** The error for anything thrown that is no VisorError (default: `internal`, a bug). */
  otherwise?: (error: unknown) => VisorError;
}

/**
 * The deadline of one driver call (a `create`, a wait for a delete): one signal that aborts
 * everything in flight when the time is up or the caller aborts, and afterwards tells the two
 * apart, so that every adapter reports a deadline the same way (`timeout`, retryable) and a
 * caller's cancellation the same way (`unavailable`). A caller that aborts because its own
 * deadline passed (the agent's action timeout aborts with a `timeout` reason) is a timeout too.
 */
export class Deadline {
  readonly ms: number;
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  readonly #callerSignal: AbortSignal | undefined;
  readonly #onCallerAbort: () => void;
  readonly #endsAt: number;
  #end: DeadlineEnd | undefined;

  constructor(ms: number, callerSignal?: AbortSignal) {
    this.ms = ms;
    this.#endsAt = Date.now() + ms;
    this.#callerSignal = callerSignal;
    this.#timer = setTimeout(() => this.#abort('timeout'), ms);
    this.#onCallerAbort = () => this.#abort(callerTimedOut(callerSignal) ? 'timeout' : 'aborted');
    if (callerSignal?.aborted) this.#onCallerAbort();
    else callerSignal?.addEventListener('abort', this.#onCallerAbort, { once: true });
  }

  /** Aborts when the deadline passes or the caller aborts; its reason is a VisorError. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Undefined while the deadline runs. */
  get end(): DeadlineEnd | undefined {
    return this.#end;
  }

  /** Milliseconds left (0 once over). */
  get remainingMs(): number {
    return Math.max(0, this.#endsAt - Date.now());
  }

  /**
   * What to throw for `error`, caught while the deadline ran: a `timeout` when the time ran out
   * (whatever the error says: an aborted request, a closed stream), `unavailable` when the caller
   * aborted, otherwise the error itself; `words` says it in the adapter's terms (what was going
   * on, the cloud's last state). An error that is no VisorError is `otherwise`'s to map, or a bug.
   */
  failure(error: unknown, words: FailureWords): VisorError {
    if (this.#end === 'timeout') return new VisorError('timeout', words.timeout(), { cause: error });
    if (this.#end === 'aborted') return new VisorError('unavailable', words.aborted(), { cause: error });
    if (isVisorError(error)) return words.refine?.(error) ?? error;
    const message = (error as Error | undefined)?.message ?? String(error);
    return words.otherwise?.(error) ?? new VisorError('internal', message, { cause: error });
  }

  /** Stops the timer and lets go of the caller's signal: call it in a `finally`. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#callerSignal?.removeEventListener('abort', this.#onCallerAbort);
  }

  #abort(end: DeadlineEnd): void {
    if (this.#end) return;
    this.#end = end;
    clearTimeout(this.#timer);
    const message = end === 'timeout' ? `the deadline of ${inSeconds(this.ms)} s passed` : 'aborted by the caller';
    this.#controller.abort(new VisorError(end === 'timeout' ? 'timeout' : 'unavailable', message));
  }
}

/**
 * A caller's signal that aborted because the caller's own deadline passed: its reason is a
 * `timeout` VisorError (what the agent's withTimeout aborts with). Any other reason is a
 * cancellation.
 */
function callerTimedOut(signal: AbortSignal | undefined): boolean {
  return isVisorError(signal?.reason, 'timeout');
}

/** Seconds for a message: whole seconds, or a tenth where it matters. */
export function inSeconds(ms: number): number {
  return ms >= 10_000 ? Math.round(ms / 1000) : Math.round(ms / 100) / 10;
}
