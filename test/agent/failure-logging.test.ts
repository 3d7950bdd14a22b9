import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { execute } from '../../agent/sync/executor.js';
import { Limiter } from '../../agent/sync/limiter.js';
import type { Plan } from '../../agent/sync/planner.js';
import type { Catalog } from '../../core/catalog/port.js';
import { syncPolicySchema } from '../../core/config/sync-policy.js';
import { VisorError } from '../../core/errors.js';
import type { IaasDriver } from '../../core/iaas/port.js';
import { createLogger, type LogLevel } from '../../core/logging/logger.js';

/**
 * A failure is logged once, as one line that summarises its cause chain; stacks only at debug.
 * An action that fails with a retryable error is tried three times: the two retries are noted
 * (one line each, the reason without any stack, whatever the level) and the failure is logged
 * once, through the real logger (winston, JSON and text).
 */
async function failingRetire(level: LogLevel, tty: boolean): Promise<string[]> {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const socket = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  const imageId = '3f2b1c4e-0000-4000-8000-0000000000aa';
  // The copy is this target's own (the executor re-reads it before every retirement).
  const markers = { agent: 'agent', target: 'prod', imageId, sha256: 'a'.repeat(64), revision: 1 };
  const driver = {
    get: async () => ({ nativeId: 'n-1', name: 'old-image', markers }),
    retire: async () => {
      throw new VisorError(
        'unavailable',
        'Glance at http://glance:9292: PATCH /v2/images/n-1 failed: read ECONNRESET',
        { cause: socket },
      );
    },
  } as unknown as IaasDriver;
  const plan: Plan = {
    target: 'prod',
    notes: [],
    actions: [
      {
        kind: 'retire',
        nativeId: 'n-1',
        name: 'old-image',
        mode: 'hide',
        reason: 'no longer selected',
        startsGrace: false,
        claim: { owner: 'target', agent: 'agent', target: 'prod', imageId },
      },
    ],
  };
  const records = await execute(plan, {
    target: 'prod',
    agentId: 'agent',
    policy: syncPolicySchema.parse({ retries: { attempts: 3, backoff: '1ms' } }),
    driver,
    // A retirement that fails never reaches the catalog.
    catalog: {} as Catalog,
    stores: new Map(),
    defaultStore: 'local',
    cacheDir: '/nonexistent',
    limiter: new Limiter(2),
    logger: createLogger({ stream, isTTY: tty, level }),
  });
  expect(records).toMatchObject([{ result: 'failed', attempts: 3, error: { kind: 'unavailable' } }]);
  await new Promise((r) => setImmediate(r));
  return lines;
}

const stackFrame = /\n\s+at |\\n\s+at /;

describe('a failure is logged once, on one line', () => {
  it('JSON at info: two retry notes and one failure line, the cause chain summarised, no stack anywhere', async () => {
    const lines = (await failingRetire('info', false)).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => `${String(l['level'])} ${String(l['message'])}`)).toEqual([
      'warn retrying after a retryable failure',
      'warn retrying after a retryable failure',
      'error action failed',
    ]);
    expect(lines[2]!['error']).toEqual({
      kind: 'unavailable',
      message: 'Glance at http://glance:9292: PATCH /v2/images/n-1 failed: read ECONNRESET',
      causes: [{ message: 'read ECONNRESET', code: 'ECONNRESET' }],
    });
    for (const line of lines) expect(JSON.stringify(line)).not.toMatch(stackFrame);
  });

  it('JSON at debug: the stack comes along, on the failure line only', async () => {
    const lines = await failingRetire('debug', false);
    const withStack = lines.filter((l) => stackFrame.test(l));
    expect(withStack).toHaveLength(1);
    expect(JSON.parse(withStack[0]!)).toMatchObject({ level: 'error', message: 'action failed' });
  });

  it('text at info: each line is one line', async () => {
    const lines = await failingRetire('info', true);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/action failed .*error=unavailable: Glance at .* <- read ECONNRESET \(ECONNRESET\)/);
  });
});
