import { schedule, type ScheduledTask } from 'node-cron';
import type { FastifyPluginAsync } from 'fastify';
import type { RunRecord } from '../core/catalog/port.js';
import { VisorError, toVisorError } from '../core/errors.js';
import type { Logger } from '../core/logging/logger.js';
import { agentRoutes } from './api/routes/agent.js';
import { compose, type ComposeOptions, type Composition } from './compose.js';
import { ContentPublisher } from './content-publisher.js';
import { AgentMetrics } from './metrics.js';
import { startServer, type RunningServer, type ServeOptions } from './serve.js';
import { Limiter, syncTarget, type SyncDeps, type Target } from './sync/runner.js';
import {
  agentIdOf,
  buildTargets,
  cacheDirOf,
  closeTargets,
  instanceIdOf,
  rivalFinder,
  type BuiltTargets,
} from './targets.js';

export interface TargetStatus {
  name: string;
  adapter: string;
  enabled: boolean;
  schedule: string | undefined;
  running: boolean;
  nextRun: string | undefined;
  lastRun: Pick<RunRecord, 'id' | 'status' | 'startedAt' | 'finishedAt' | 'error' | 'drift' | 'trigger'> & { counts: Record<string, number> } | undefined;
  drift: number | undefined;
  /** The cloud's driver could not be built: the target cannot sync until the config is fixed. */
  error: string | undefined;
}

/** Served without a signature: metrics, and the one-time content URLs clouds fetch images from. */
export const agentPublicPaths = ['/metrics', '/agent/content/'] as const;
/** The content URLs' tokens are secrets while they are valid: never written to the access log. */
export const agentSecretPaths = ['/agent/content/'] as const;

interface Generation {
  composition: Composition;
  built: BuiltTargets;
  tasks: Map<string, ScheduledTask>;
}

/**
 * `visor agent`: the image API plus a scheduler that keeps each configured cloud in step with
 * the catalog. One run per target at a time (also across agents: leases in the catalog); a
 * failing target never holds up the others; SIGHUP reloads the config, SIGTERM stops after the
 * runs in flight finished (or were aborted after the grace period, cleaning up after themselves).
 */
export class AgentDaemon {
  readonly metrics = new AgentMetrics();
  readonly #options: ComposeOptions & ServeOptions;
  #server: RunningServer | undefined;
  #generation: Generation | undefined;
  #deps: SyncDeps | undefined;
  readonly #running = new Map<string, Promise<RunRecord>>();
  readonly #stop = new AbortController();
  #logger: Logger | undefined;
  #publisher: ContentPublisher | undefined;
  /** The composition the server was started with: its catalog and stores serve every generation. */
  #initial: Composition | undefined;

  constructor(options: ComposeOptions & ServeOptions) {
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
    const composition = await compose(this.#options);
    this.#initial = composition;
    this.#logger = composition.logger.child({ component: 'agent' });
    const publicUrl = composition.config.agent.publicUrl;
    this.#publisher = new ContentPublisher(() => publicUrl ?? this.url);
    const routes: FastifyPluginAsync = agentRoutes({ daemon: this, publisher: this.#publisher });
    try {
      this.#server = await startServer(composition, {
        host: this.#options.host,
        port: this.#options.port,
        extraRoutes: routes,
        publicPaths: agentPublicPaths,
        secretPaths: agentSecretPaths,
      });
    } catch (error) {
      await composition.dispose();
      throw error;
    }
    await this.#activate(composition);
  }

  /** Status of every target, for /status and `visor status`. */
  async status(): Promise<TargetStatus[]> {
    const generation = this.#generation;
    if (!generation) return [];
    const out: TargetStatus[] = [];
    for (const [name, cloud] of Object.entries(generation.composition.config.clouds)) {
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
    const run = syncTarget(target, this.#deps!, { trigger, signal: this.#stop.signal })
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
    let composition: Composition;
    try {
      composition = await compose(this.#options);
    } catch (error) {
      log.error('config reload failed; keeping the running configuration', { error: toVisorError(error) });
      throw error;
    }
    const old = this.#generation;
    await this.#activate(composition, true);
    if (old) {
      for (const task of old.tasks.values()) await task.destroy();
      // Drivers of the old generation close once the runs using them are done.
      void Promise.allSettled([...this.#running.values()]).then(async () => {
        await closeTargets(old.built);
        if (old.composition !== this.#initial) await old.composition.dispose();
      });
    }
    log.info('configuration reloaded', { clouds: Object.keys(composition.config.clouds) });
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
    if (generation) {
      await closeTargets(generation.built);
      if (generation.composition !== this.#initial) await generation.composition.dispose();
    }
    await this.#server?.close(graceMs);
  }

  async #activate(composition: Composition, reload = false): Promise<void> {
    const server = this.#server!;
    const built = await buildTargets(composition);
    const agentId = agentIdOf(composition);
    const config = composition.config;
    this.#deps = {
      // The catalog and stores stay those the server opened at start; a reload changes clouds and policies.
      catalog: server.catalog,
      stores: server.stores,
      defaultStore: this.#initial!.config.defaultStore,
      cacheDir: cacheDirOf(composition),
      agentId,
      instanceId: instanceIdOf(agentId),
      limiter: new Limiter(config.agent.concurrency),
      logger: composition.logger.child({ component: 'sync', agent: agentId }),
      leaseMs: config.agent.leaseSeconds * 1000,
      keepRuns: config.agent.keepRuns,
      publish: (source) => this.#publisher!.publish(source),
      rivals: rivalFinder(composition, built),
    };
    for (const [name, error] of built.failed) this.#logger!.error('cloud unusable; fix its configuration', { target: name, error });
    const tasks = new Map<string, ScheduledTask>();
    for (const [name, target] of built.targets) {
      if (!target.policy.enabled || !target.policy.schedule) continue;
      tasks.set(name, this.#schedule(target));
    }
    this.#generation = { composition, built, tasks };
    if (!reload) this.#logger!.info('agent started', { agent: agentId, clouds: [...built.targets.keys()], scheduled: [...tasks.keys()] });
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
        await this.trigger(target.name, 'schedule').catch((error: unknown) => log.error('scheduled run failed', { error: toVisorError(error) }));
      },
      {
        name: `visor:${target.name}`,
        noOverlap: true,
        logger: { info: (m) => log.debug(m), warn: (m) => log.warn(m), error: (m) => log.error(String(m)), debug: (m) => log.debug(String(m)) },
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
