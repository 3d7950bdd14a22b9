import type { Logger } from '../../core/logging/logger.js';

export interface LogLine {
  level: 'error' | 'warn' | 'info' | 'debug';
  message: string;
  meta: Record<string, unknown>;
}

/** A Logger that keeps every line (with its children's context): tests read what the agent said. */
export function recordingLogger(
  lines: LogLine[] = [],
  context: Record<string, unknown> = {},
): Logger & { lines: LogLine[] } {
  const at =
    (level: LogLine['level']) =>
    (message: string, meta: Record<string, unknown> = {}) => {
      lines.push({ level, message, meta: { ...context, ...meta } });
    };
  return {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => recordingLogger(lines, { ...context, ...more }),
  };
}
