import { describe, expect, it } from 'vitest';
import { recordingLogger } from '../../test/support/recording-logger.js';
import { maxTaskLogLines, recordingTaskLog, type TaskLogLine } from './task-log.js';

describe('task log', () => {
  it('keeps info and up, as plain fields without secret-looking keys, and writes everything through', () => {
    const logger = recordingLogger();
    const written = logger.lines;
    const lines: TaskLogLine[] = [];
    const log = recordingTaskLog(logger, lines).child({ action: 'create' });
    log.debug('not kept');
    log.warn('retrying', { attempt: 2, error: new Error('503 from glance'), password: 'hunter2', nested: { a: 1 } });
    expect(lines).toEqual([
      { at: expect.any(String), level: 'warn', message: 'retrying', fields: { attempt: 2, error: '503 from glance' } },
    ]);
    expect(written.map((l) => l.message)).toEqual(['not kept', 'retrying']);
  });

  it('is bounded: the last kept line says how many more there were', () => {
    const lines: TaskLogLine[] = [];
    const logger = recordingLogger();
    const log = recordingTaskLog(logger, lines);
    for (let i = 0; i < maxTaskLogLines + 5; i++) log.info(`line ${i}`);
    expect(lines).toHaveLength(maxTaskLogLines);
    expect(lines.at(-2)!.message).toBe(`line ${maxTaskLogLines - 2}`);
    expect(lines.at(-1)!.message).toBe("(6 more lines in the agent's log)");
  });
});
