import winston from 'winston';
import { describeErrorSummary, isErrorLike, summarizeError } from './error-summary.js';
import { SecretRegistry } from './redact.js';

export const logLevels = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof logLevels)[number];
export type LogFormat = 'auto' | 'json' | 'text';

/** The logging port: everything in visor logs through this, never through console. */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  /** A logger whose every line carries `context` (target, run id, request id, ...). */
  child(context: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where lines go; stderr by default so that stdout stays clean for command output. */
  stream?: NodeJS.WritableStream;
  secrets?: SecretRegistry;
  /** Decides `auto`: readable on a terminal, JSON otherwise. */
  isTTY?: boolean;
}

const redactFormat = (secrets: SecretRegistry) =>
  winston.format((info) => {
    const masked = secrets.redact({ ...info }) as Record<string | symbol, unknown>;
    for (const key of Object.keys(info)) delete (info as Record<string, unknown>)[key];
    Object.assign(info, masked);
    return info;
  })();

/**
 * Errors in a line's metadata become their summary: message and kind or code of the error and
 * of each cause, on one line (as text: `kind: message <- cause (code)`); stacks only at debug.
 */
const errorFormat = (stacks: boolean, text: boolean) =>
  winston.format((info) => {
    for (const key of Object.keys(info)) {
      const value = (info as Record<string, unknown>)[key];
      if (!isErrorLike(value)) continue;
      const summary = summarizeError(value, { stacks });
      if (!text) (info as Record<string, unknown>)[key] = summary;
      else {
        const frames = [summary, ...(summary.causes ?? [])].map((s) => s.stack).filter(Boolean);
        (info as Record<string, unknown>)[key] = [describeErrorSummary(summary), ...frames].join('\n');
      }
    }
    return info;
  })();

const textFormat = winston.format.printf((info) => {
  const { level, message, timestamp, ...rest } = info as Record<string, unknown>;
  const meta = Object.entries(rest)
    .filter(([k]) => typeof k === 'string')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${String(timestamp)} ${String(level)} ${String(message)}${meta ? ` ${meta}` : ''}`;
});

/**
 * Lines below the level are dropped here: winston formats every line (timestamp, masking, JSON)
 * and only its transport compares levels, so a debug line nobody shows cost as much as a shown one.
 */
class WinstonLogger implements Logger {
  constructor(private readonly inner: winston.Logger) {}
  error(message: string, meta?: Record<string, unknown>): void {
    this.inner.error(message, meta);
  }
  warn(message: string, meta?: Record<string, unknown>): void {
    if (this.inner.isLevelEnabled('warn')) this.inner.warn(message, meta);
  }
  info(message: string, meta?: Record<string, unknown>): void {
    if (this.inner.isLevelEnabled('info')) this.inner.info(message, meta);
  }
  debug(message: string, meta?: Record<string, unknown>): void {
    if (this.inner.isLevelEnabled('debug')) this.inner.debug(message, meta);
  }
  child(context: Record<string, unknown>): Logger {
    return new WinstonLogger(this.inner.child(context));
  }
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const secrets = options.secrets ?? new SecretRegistry();
  const tty = options.isTTY ?? Boolean((stream as { isTTY?: boolean }).isTTY);
  const json = options.format === 'json' || (options.format !== 'text' && !tty);
  const stacks = options.level === 'debug';
  const format = json
    ? winston.format.combine(
        winston.format.timestamp(),
        errorFormat(stacks, false),
        redactFormat(secrets),
        winston.format.json(),
      )
    : winston.format.combine(
        winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
        errorFormat(stacks, true),
        redactFormat(secrets),
        ...(tty ? [winston.format.colorize({ level: true })] : []),
        textFormat,
      );
  const inner = winston.createLogger({
    level: options.level ?? 'info',
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    format,
    transports: [new winston.transports.Stream({ stream })],
  });
  return new WinstonLogger(inner);
}

/** Discards everything; for library use and tests that do not look at logs. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return silentLogger;
  },
};
