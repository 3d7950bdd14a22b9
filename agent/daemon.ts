import { schedule, type ScheduledTask } from 'node-cron';
import type { FastifyPluginAsync } from 'fastify';
import type { RunRecord } from '../core/catalog/port.js';
import type { ContentSource } from '../core/iaas/port.js';
import { VisorError, toVisorError } from '../core/errors.js';
import type { Logger } from '../core/logging/logger.js';
import { type AgentControl, agentRoutes } from './api/routes/agent.js';
import { ContentPublisher } from './content-publisher.js';
import { contentPathPrefix } from './content-route.js';
import { AgentMetrics } from './metrics.js';
import { openRuntime, type Runtime, type RuntimeOptions } from './runtime/open-runtime.js';
import type { BuiltTargets } from './runtime/services.js';
import { startServer, type RunningServer, type ServeOptions } from './serve.js';
import { syncTarget, type SyncDeps, type Target } from './sync/runner.js';

export interface TargetStatus {
  name: string;
  adapter: string;
  enabled: boolean;
  schedule: string | undefined;
  running: boolean;
  nextRun: string | undefined;
  lastRun:
    | (Pick<RunRecord, 'id' | 'status' | 'startedAt' | 'finishedAt' | 'error' | 'drift' | 'trigger'> & {
        counts: Record<string, number>;
      })
    | undefined;
  drift: number | undefined;
  /** The cloud's driver could not be built: the target cannot sync until the config is fixed. */
  error: string | undefined;
}

/** Served without a signature: metrics, and the one-time content URLs clouds fetch images from. */
export const agentPublicPaths = ['/metrics', contentPathPrefix] as const;
/** The content URLs' tokens are secrets while they are valid: never written to the access log. */
export const agentSecretPaths = [contentPathPrefix] as const;

/** One reading of the config: its clouds, their drivers and schedules, over the server's catalog and stores. */
interface Generation {
  runtime: Runtime;
  built: BuiltTargets;
  deps: SyncDeps;
  tasks: Map<string, ScheduledTask>;
}

export type AgentOptions = Omit<RuntimeOptions, 'setup' | 'storage' | 'publish' | 'serveContent' | 'only'> &
  ServeOptions;

/**
 * `visor agent`: the image API plus a scheduler that keeps each configured cloud in step with
 * the catalog. One run per target at a time (also across agents: leases in the catalog); a
 * failing target never holds up the others; SIGHUP reloads the config, SIGTERM stops after the
 * runs in flight finished (or were aborted after the grace period, cleaning up after themselves).
 */
export class AgentDaemon implements AgentControl {
  readonly metrics = new AgentMetrics();
  readonly #options: AgentOptions;
  #server: RunningServer | undefined;
  #generation: Generation | undefined;
  readonly #running = new Map<string, Promise<RunRecord>>();
  readonly #stop = new AbortController();
  #logger: Logger | undefined;
  #publisher: ContentPublisher | undefined;
  /** The runtime the server was started with: its catalog and stores serve every generation. */
  #base: Runtime | undefined;

  constructor(options: AgentOptions) {
    this.#options = options;
  }

  get url(): string {
    if (!this.#server) throw new VisorError('internal', 'the agent is not started');
    return this.#server.url;
  }

  get server(): RunningServer {
    if (!this.#server) throw new VisorError('internal', 'the agent is not started');
    return this.#server;
  }

  async start(): Promise<void> {
    const base = await openRuntime(this.#options);
    this.#base = base;
    this.#logger = base.logger.child({ component: 'agent' });
    const publicUrl = base.config.agent.publicUrl;
    this.#publisher = new ContentPublisher(() => publicUrl ?? this.url);
    const routes: FastifyPluginAsync = agentRoutes({ daemon: this, publisher: this.#publisher, logger: this.#logger });
    try {
      this.#server = await startServer(base, {
        host: this.#options.host,
        port: this.#options.port,
        extraRoutes: routes,
        publicPaths: agentPublicPaths,
        secretPaths: agentSecretPaths,
      });
    } catch (error) {
      await base.close();
      throw error;
    }
    // The first generation reads nothing again: the base's config, over the base's catalog and stores.
    await this.#activate(await this.#generationRuntime({ setup: base }));
  }

  /** Status of every target, for /status and `visor status`. */
  async status(): Promise<TargetStatus[]> {
    const generation = this.#generation;
    if (!generation) return [];
    const out: TargetStatus[] = [];
    for (const [name, cloud] of Object.entries(generation.runtime.config.clouds)) {
      const last = (await this.#server!.catalog.runs.list({ target: name, limit: 1 }))[0];
      const task = generation.tasks.get(name);
      out.push({
        name,
        adapter: cloud.adapter,
        enabled: cloud.sync.enabled,
        schedule: cloud.sync.schedule,
        running: this.#running.has(name),
        nextRun: task?.getNextRun()?.toISOString(),
        lastRun: last ? summarise(last) : undefined,
        drift: last?.drift,
        error: generation.built.failed.get(name)?.message,
      });
    }
    return out;
  }

  /** Runs a target now (manual trigger); a run already going on is joined, not duplicated. */
  trigger(name: string, trigger: RunRecord['trigger'] = 'manual'): Promise<RunRecord> {
    const existing = this.#running.get(name);
    if (existing) return existing;
    const generation = this.#generation;
    const target = generation?.built.targets.get(name);
    if (!generation || !target) {
      const failed = generation?.built.failed.get(name);
      return Promise.reject(failed ?? new VisorError('notFound', `no cloud named ${name} in the configuration`));
    }
    if (this.#stop.signal.aborted) return Promise.reject(new VisorError('unavailable', 'the agent is stopping'));
    const run = syncTarget(target, generation.deps, { trigger, signal: this.#stop.signal })
      .then((record) => {
        this.metrics.recordRun(record);
        return record;
      })
      .finally(() => this.#running.delete(name));
    this.#running.set(name, run);
    return run;
  }

  /** Re-reads the configuration; running syncs finish with the old one. A bad file keeps the old one running. */
  async reload(): Promise<void> {
    const log = this.#logger!;
    let runtime: Runtime;
    try {
      runtime = await this.#generationRuntime(this.#options);
    } catch (error) {
      log.error('config reload failed; keeping the running configuration', { error: toVisorError(error) });
      throw error;
    }
    const old = this.#generation;
    await this.#activate(runtime, true);
    if (old) {
      for (const task of old.tasks.values()) await task.destroy();
      // Drivers of the old generation close once the runs using them are done.
      void Promise.allSettled([...this.#running.values()]).then(() => old.runtime.close());
    }
    log.info('configuration reloaded', { clouds: Object.keys(runtime.config.clouds) });
  }

  /** Stops scheduling, waits up to `graceMs` for running syncs, then aborts them (they clean up). */
  async stop(graceMs = 60_000): Promise<void> {
    const generation = this.#generation;
    for (const task of generation?.tasks.values() ?? []) await task.destroy();
    const running = Promise.allSettled([...this.#running.values()]);
    const timer = setTimeout(() => this.#stop.abort(new VisorError('unavailable', 'the agent is stopping')), graceMs);
    timer.unref();
    await running;
    clearTimeout(timer);
    this.#stop.abort();
    await generation?.runtime.close();
    await this.#server?.close(graceMs);
  }

  /**
   * A runtime for one generation: the clouds and policies of its config, over the catalog and
   * stores the server opened at start (a reload changes clouds and policies, not those).
   */
  async #generationRuntime(options: RuntimeOptions): Promise<Runtime> {
    const publisher = this.#publisher!;
    const publish = (source: ContentSource) => publisher.publish(source);
    const runtime = await openRuntime({ ...options, storage: this.#base!, publish });
    try {
      await runtime.syncDeps();
      return runtime;
    } catch (error) {
      await runtime.close();
      throw error;
    }
  }

  async #activate(runtime: Runtime, reload = false): Promise<void> {
    const built = await runtime.targets();
    const deps = await runtime.syncDeps();
    const agentId = deps.agentId;
    for (const [name, error] of built.failed)
      this.#logger!.error('cloud unusable; fix its configuration', { target: name, error });
    const tasks = new Map<string, ScheduledTask>();
    for (const [name, target] of built.targets) {
      if (!target.policy.enabled || !target.policy.schedule) continue;
      tasks.set(name, this.#schedule(target));
    }
    this.#generation = { runtime, built, deps, tasks };
    if (!reload)
      this.#logger!.info('agent started', {
        agent: agentId,
        clouds: [...built.targets.keys()],
        scheduled: [...tasks.keys()],
      });
  }

  #schedule(target: Target): ScheduledTask {
    const log = this.#logger!.child({ target: target.name });
    return schedule(
      target.policy.schedule!,
      async () => {
        if (this.#running.has(target.name)) {
          log.warn('previous run still going on; skipping this schedule');
          return;
        }
        await this.trigger(target.name, 'schedule').catch((error: unknown) =>
          log.error('scheduled run failed', { error: toVisorError(error) }),
        );
      },
      {
        name: `visor:${target.name}`,
        noOverlap: true,
        logger: {
          info: (m) => log.debug(m),
          warn: (m) => log.warn(m),
          error: (m) => log.error(String(m)),
          debug: (m) => log.debug(String(m)),
        },
      },
    );
  }
}

function summarise(run: RunRecord): NonNullable<TargetStatus['lastRun']> {
  const counts: Record<string, number> = {};
  for (const action of run.actions) counts[action.result] = (counts[action.result] ?? 0) + 1;
  return {
    id: run.id,
    status: run.status,
    startedAt: run.startedAt,
    trigger: run.trigger,
    ...(run.finishedAt ? { finishedAt: run.finishedAt } : {}),
    ...(run.error ? { error: run.error } : {}),
    ...(run.drift !== undefined ? { drift: run.drift } : {}),
    counts,
  };
}
