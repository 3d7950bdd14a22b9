import type { RunRecord } from '../../core/catalog/port.js';
import type { SyncEvent } from '../sync/executor.js';
import { describeAction, type ShownPlan } from '../sync/plan-view.js';
import type { Action } from '../sync/planner.js';
import { describeShare } from '../sync/share-plan.js';
import { ExitCode } from './exit-codes.js';
import { humanSize } from './format.js';
import type { CliIo } from './io.js';

/** How `plan`, `sync` and `migrate` show plans, runs and progress (the plan's words: sync/plan-view). */
export const planHeaders = ['CLOUD', 'ACTION', 'IMAGE', 'DETAIL'] as const;

export function planRows(plan: ShownPlan): string[][] {
  const rows = plan.actions.map((a) => [plan.target, a.kind, a.name, describeAction(a)]);
  for (const s of plan.sharing ?? []) rows.push([plan.target, s.kind, s.name, describeShare(s)]);
  return rows;
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
