import type { Command } from 'commander';
import { VisorError } from '../../core/errors.js';
import type { RuntimeOptions } from '../runtime/open-runtime.js';
import type { CliIo } from './io.js';

/** The flags of every command that works on a configured visor. */
export interface RuntimeFlags {
  config?: string;
  dataDir?: string;
  json?: boolean;
}

/** Adds `-c/--config`, `--data-dir` and (unless `json` is false) `--json`. */
export function withRuntimeFlags(command: Command, io: CliIo, options: { json?: boolean } = {}): Command {
  command
    .option('-c, --config <file>', 'config file', io.env['VISOR_CONFIG'])
    .option('--data-dir <dir>', 'data directory (default: $VISOR_DATA_DIR or ~/.local/share/visor)');
  return options.json === false ? command : command.option('--json', 'print JSON');
}

export function runtimeOptions(flags: RuntimeFlags, io: CliIo): RuntimeOptions {
  return { configFile: flags.config, dataDir: flags.dataDir, env: io.env };
}

/** `--port`: a TCP port, or undefined when not given. */
export function parsePort(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new VisorError('invalidInput', `--port must be a TCP port (0-65535), got "${value}"`);
  }
  return port;
}

/** Resolves when the process is asked to stop (SIGTERM, SIGINT), after `stop` finished. */
export function untilStopped(stop: (signal: string) => Promise<void>): Promise<void> {
  return new Promise<void>((resolveStop) => {
    const onSignal = (signal: string) => void stop(signal).then(resolveStop, resolveStop);
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
}
