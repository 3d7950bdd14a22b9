import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunRecord } from '../core/catalog/port.js';

/**
 * Prometheus metrics of one agent's runs (its own registry: no global state). Served merged
 * with the API's, which carry the process metrics.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly #actions = new Counter({
    name: 'visor_sync_actions_total',
    help: 'Sync actions by target, kind and result',
    labelNames: ['target', 'action', 'result'],
    registers: [this.registry],
  });
  readonly #bytes = new Counter({
    name: 'visor_sync_bytes_total',
    help: 'Image bytes sent to clouds',
    labelNames: ['target'],
    registers: [this.registry],
  });
  readonly #runs = new Counter({
    name: 'visor_sync_runs_total',
    help: 'Sync runs by target and outcome',
    labelNames: ['target', 'status'],
    registers: [this.registry],
  });
  readonly #drift = new Gauge({
    name: 'visor_sync_drift',
    help: 'Actions still needed after the last run (0: in step)',
    labelNames: ['target'],
    registers: [this.registry],
  });
  readonly #lastRun = new Gauge({
    name: 'visor_sync_last_run_timestamp_seconds',
    help: 'When the last run of a target finished',
    labelNames: ['target'],
    registers: [this.registry],
  });
  readonly #lastSuccess = new Gauge({
    name: 'visor_sync_last_success_timestamp_seconds',
    help: 'When a run of a target last succeeded',
    labelNames: ['target'],
    registers: [this.registry],
  });
  readonly #duration = new Histogram({
    name: 'visor_sync_run_duration_seconds',
    help: 'Duration of sync runs',
    labelNames: ['target'],
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    registers: [this.registry],
  });

  recordRun(run: RunRecord): void {
    if (run.dryRun) return;
    const target = run.target;
    this.#runs.inc({ target, status: run.status });
    for (const action of run.actions) {
      this.#actions.inc({ target, action: action.action, result: action.result });
      if (action.bytes && action.result !== 'failed') this.#bytes.inc({ target }, action.bytes);
    }
    if (run.drift !== undefined) this.#drift.set({ target }, run.drift);
    const finished = Date.parse(run.finishedAt ?? run.startedAt) / 1000;
    this.#lastRun.set({ target }, finished);
    if (run.status === 'succeeded') this.#lastSuccess.set({ target }, finished);
    this.#duration.observe({ target }, finished - Date.parse(run.startedAt) / 1000);
  }
}
