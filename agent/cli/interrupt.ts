import type { CliIo } from './io.js';

/** Exit codes of a command stopped by a signal, as shells report them (128 + the signal number). */
const signalExit: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/** What a one-shot command sees of Ctrl-C and SIGTERM. */
export interface Interrupt {
  /** Fires on the first SIGINT or SIGTERM: stop new work, abort transfers (they clean up after themselves). */
  readonly signal: AbortSignal;
  /** The signal received, if any. */
  readonly received: 'SIGINT' | 'SIGTERM' | undefined;
}

/**
 * Runs a one-shot command with SIGINT and SIGTERM turned into an abort: the command's transfers
 * stop and clean up (no partial file, no half-made image, the lease released), then it exits
 * 130 or 143 with one clear line. A second signal while cleaning up exits at once.
 */
export async function withInterrupts(
  io: CliIo,
  what: string,
  work: (interrupt: Interrupt) => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  let received: Interrupt['received'];
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
    if (received) {
      io.stderr.write(`visor: ${signal} again: exiting without cleaning up\n`);
      process.exit(signalExit[signal]);
    }
    received = signal;
    io.stderr.write(`visor: ${signal}: stopping ${what}; cleaning up (again to exit at once)\n`);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    await work({
      signal: controller.signal,
      get received() {
        return received;
      },
    });
  } catch (error) {
    if (!received) throw error;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  if (received) {
    io.stderr.write(`visor: ${what} interrupted by ${received}; nothing partial was left behind\n`);
    process.exitCode = signalExit[received];
  }
}
