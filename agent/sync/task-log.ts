import type { Logger } from '../../core/logging/logger.js';

/** One line an action logged, kept with its record (the dashboard's and `visor runs RUN`'s task log). */
export interface TaskLogLine {
  at: string;
  level: 'error' | 'warn' | 'info';
  message: string;
  /** Plain values of the line's context (errors as their message); secret-looking keys left out. */
  fields?: Record<string, string | number | boolean>;
}

/** Lines kept per action: enough for retries and a failure, bounded whatever a driver does. */
export const maxTaskLogLines = 50;
const secretKey = /pass|secret|token|key|credential|auth|cookie/i;

function plain(meta: Record<string, unknown> | undefined): TaskLogLine['fields'] {
  if (!meta) return undefined;
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(meta)) {
    if (secretKey.test(key)) continue;
    if (value instanceof Error) out[key] = value.message.slice(0, 500);
    else if (typeof value === 'string') out[key] = value.slice(0, 500);
    else if (typeof value === 'number' || typeof value === 'boolean') out[key] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * A logger that writes through to `inner` and also keeps the action's info, warn and error
 * lines (not debug) in `lines`, up to `maxTaskLogLines` (the last line says how many more).
 */
export function recordingTaskLog(inner: Logger, lines: TaskLogLine[]): Logger {
  let dropped = 0;
  const keep = (level: TaskLogLine['level'], message: string, meta?: Record<string, unknown>) => {
    if (lines.length >= maxTaskLogLines) {
      // The first overflow also gives up the last kept line, to make room for the note.
      dropped += dropped === 0 ? 2 : 1;
      const note = `(${dropped} more line${dropped === 1 ? '' : 's'} in the agent's log)`;
      lines[maxTaskLogLines - 1] = { at: new Date().toISOString(), level: 'info', message: note };
      return;
    }
    const fields = plain(meta);
    lines.push({ at: new Date().toISOString(), level, message, ...(fields ? { fields } : {}) });
  };
  const wrap = (logger: Logger): Logger => ({
    error: (message, meta) => {
      logger.error(message, meta);
      keep('error', message, meta);
    },
    warn: (message, meta) => {
      logger.warn(message, meta);
      keep('warn', message, meta);
    },
    info: (message, meta) => {
      logger.info(message, meta);
      keep('info', message, meta);
    },
    debug: (message, meta) => logger.debug(message, meta),
    child: (context) => wrap(logger.child(context)),
  });
  return wrap(inner);
}
