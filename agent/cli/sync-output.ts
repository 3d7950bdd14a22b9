import type { RunRecord } from '../../core/catalog/port.js';
import type { SyncEvent } from '../sync/executor.js';
import type { Action, Plan } from '../sync/planner.js';
import { ExitCode } from './exit-codes.js';
import { humanSize } from './format.js';
import type { CliIo } from './io.js';

/** How `plan`, `sync` and `migrate` show plans, runs and progress. */
export function describeAction(action: Action): string {
  switch (action.kind) {
    case 'create':
      return action.desired.convertFrom
        ? `upload (convert ${action.desired.convertFrom} -> ${action.desired.diskFormat})`
        : 'upload';
    case 'replace':
      return `upload new content, then retire ${count(action.retire.length, 'old copy', 'old copies')}`;
    case 'update':
      return action.changes.join('; ');
    case 'adopt':
      return `mark ${action.nativeId} as this target's (${action.reason})`;
    case 'retire':
      return `${action.mode}${action.startsGrace ? ' (grace period starts)' : ''}: ${action.reason}`;
    case 'cleanup':
      return `delete ${action.nativeId}: ${action.reason}`;
    case 'import':
      return `import ${action.mode === 'full' ? 'metadata and bits' : 'metadata'} into the catalog`;
  }
}

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

export const planHeaders = ['CLOUD', 'ACTION', 'IMAGE', 'DETAIL'] as const;

export function planRows(plan: Plan): string[][] {
  return plan.actions.map((a) => [plan.target, a.kind, a.name, describeAction(a)]);
}

export function planJson(plan: Plan) {
  return {
    target: plan.target,
    actions: plan.actions.map((a) => ({
      kind: a.kind,
      name: a.name,
      ...('imageId' in a && a.imageId ? { imageId: a.imageId } : {}),
      ...('nativeId' in a ? { nativeId: a.nativeId } : {}),
      detail: describeAction(a),
    })),
    notes: plan.notes,
  };
}

export function exitCodeOf(statuses: readonly RunRecord['status'][]): number {
  if (statuses.length === 0) return ExitCode.ok;
  if (statuses.every((s) => s === 'succeeded')) return ExitCode.ok;
  if (statuses.every((s) => s === 'failed')) return ExitCode.failure;
  return ExitCode.partial;
}

export function countResults(run: RunRecord): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of run.actions) counts[a.result] = (counts[a.result] ?? 0) + 1;
  return counts;
}

/** One stderr line per finished action: what, on which image, the result, bytes and speed. */
export function progressPrinter(io: CliIo, target: string): (event: SyncEvent) => void {
  const started = new Map<Action, number>();
  return (event) => {
    if (event.type === 'start') started.set(event.action, Date.now());
    if (event.type !== 'end') return;
    const r = event.record;
    const seconds = (Date.now() - (started.get(event.action) ?? Date.now())) / 1000;
    const size = r.bytes ? ` ${humanSize(r.bytes)}${seconds > 0.5 ? ` at ${humanSize(r.bytes / seconds)}/s` : ''}` : '';
    const why = r.error ? `: ${r.error.kind}: ${r.error.message}` : r.detail ? ` (${r.detail})` : '';
    io.stderr.write(`[${target}] ${r.action} ${r.name ?? r.nativeId ?? ''}: ${r.result}${size}${why}\n`);
  };
}
