import type { ActionRecord, Catalog, RunRecord } from '../../core/catalog/port.js';
import { type Caller, canSee } from '../service/access.js';

/** A run as listed: what it did in numbers, without its actions. */
export interface RunSummary {
  id: string;
  target: string;
  agent: string;
  trigger: RunRecord['trigger'];
  dryRun: boolean;
  status: RunRecord['status'];
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  /** Actions by result (created, failed, ...). */
  counts: Record<string, number>;
  tasks: number;
  bytes: number;
  drift?: number;
  error?: string;
}

/** What a caller who is not an admin reads instead of a run's error (which may name endpoints). */
export const hiddenRunError = 'the run failed (its details are shown to admins)';

export function summariseRun(run: RunRecord, actions: readonly ActionRecord[] = run.actions): RunSummary {
  const counts: Record<string, number> = {};
  let bytes = 0;
  for (const action of actions) {
    counts[action.result] = (counts[action.result] ?? 0) + 1;
    bytes += action.bytes ?? 0;
  }
  const finished = run.finishedAt ? Date.parse(run.finishedAt) - Date.parse(run.startedAt) : undefined;
  return {
    id: run.id,
    target: run.target,
    agent: run.agent,
    trigger: run.trigger,
    dryRun: run.dryRun,
    status: run.status,
    startedAt: run.startedAt,
    ...(run.finishedAt ? { finishedAt: run.finishedAt } : {}),
    ...(finished !== undefined && finished >= 0 ? { durationMs: finished } : {}),
    counts,
    tasks: actions.length,
    bytes,
    ...(run.drift !== undefined ? { drift: run.drift } : {}),
    ...(run.error ? { error: run.error } : {}),
  };
}

/**
 * The part of a run a caller may read. An admin reads all of it. Anyone else reads the
 * actions on images they can see, and no cloud-side detail: actions on the cloud's own or
 * unknown images, native ids of images they cannot see, the run's error message.
 */
export class RunView {
  readonly #catalog: Catalog;
  readonly #caller: Caller;
  readonly #visible = new Map<string, boolean>();

  constructor(catalog: Catalog, caller: Caller) {
    this.#catalog = catalog;
    this.#caller = caller;
  }

  async actions(run: RunRecord): Promise<ActionRecord[]> {
    if (this.#caller.admin) return run.actions;
    const out: ActionRecord[] = [];
    for (const { log: _adminsOnly, ...action } of run.actions) {
      // The task log may name endpoints and cloud-side details, as the run's error does: admins only.
      if (action.imageId && (await this.canSeeImage(action.imageId))) out.push(action);
    }
    return out;
  }

  async summary(run: RunRecord): Promise<RunSummary> {
    const summary = summariseRun(run, await this.actions(run));
    if (!this.#caller.admin && summary.error) summary.error = hiddenRunError;
    return summary;
  }

  async canSeeImage(imageId: string): Promise<boolean> {
    let known = this.#visible.get(imageId);
    if (known === undefined) {
      const image = await this.#catalog.images.find(imageId);
      known = image !== undefined && canSee(this.#caller, image);
      this.#visible.set(imageId, known);
    }
    return known;
  }
}
