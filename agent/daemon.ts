import { schedule, type ScheduledTask } from 'node-cron';
import type { FastifyPluginAsync } from 'fastify';
import type { RunRecord } from '../core/catalog/port.js';
import type { ContentSource } from '../core/iaas/port.js';
import { VisorError, toVisorError } from '../core/errors.js';
import type { Logger } from '../core/logging/logger.js';
import { type AgentControl, agentRoutes } from './api/routes/agent.js';
import type { CloudSummary } from './api/routes/replication.js';
import { summariseRun } from './api/run-view.js';
import { ContentPublisher } from './content-publisher.js';
import { contentPathPrefix } from './content-route.js';
import { AgentMetrics } from './metrics.js';
import { openRuntime, type Runtime, type RuntimeOptions } from './runtime/open-runtime.js';
import type { BuiltTargets } from './runtime/services.js';
import { startServer, type RunningServer, type ServeOptions } from './serve.js';
import type { Plan } from './sync/planner.js';
import { planTarget, syncTarget, type SyncDeps, type Target } from './sync/runner.js';
import { failedImages } from './sync/retry-failed.js';
import { TransferTracker } from './sync/transfers.js';
import { sharingSummary } from './sync/share-run.js';
import { deliverWebhooks } from './notify/webhooks.js';
import { changingResults, SubscriptionScheduler } from './sources/scheduler.js';
import { ChangeWatch } from './sync/change-watch.js';
import { selectorFor } from './sync/desired.js';

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
  /** Copies shared, memberships pending acceptance, catalog members with no principal mapped. */
  sharing: { shared: number; pending: string[]; unmapped: string[] };
}

/** Deadlines of a stop after the runs' grace period (agent.stopGraceSeconds). */
export const stopPhases = { cleanupSeconds: 30, requestsSeconds: 30 } as const;

/** The longest a SIGTERM can take to stop the agent: what a service manager must wait for. */
export function worstCaseStopSeconds(stopGraceSeconds: number): number {
  return stopGraceSeconds + stopPhases.cleanupSeconds + stopPhases.requestsSeconds;
}

const delay = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/** Served without a signature: the one-time content URLs clouds fetch images from (/metrics: see the server). */
export const agentPublicPaths = [contentPathPrefix] as const;
/** The content URLs' tokens are secrets while they are valid: never written to the access log. */
export const agentSecretPaths = [contentPathPrefix] as const;

/** One reading of the config: its clouds, their drivers and schedules, over the server's catalog and stores. */
interface Generation {
  runtime: Runtime;
  built: BuiltTargets;
  deps: SyncDeps;
  tasks: Map<string, ScheduledTask>;
  subscriptions: SubscriptionScheduler;
  /** Wakes the clouds a catalog change concerns (absent when no cloud wants it, or the catalog keeps no feed). */
  changes: ChangeWatch | undefined;
}

/** Without a change feed in the catalog, subscriptions' imports wake every cloud after this quiet time. */
export const wakeDebounceMs = 2_000;

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
  readonly #transfers = new TransferTracker();
  readonly #stop = new AbortController();
  #logger: Logger | undefined;
  #publisher: ContentPublisher | undefined;
  /** The runtime the server was started with: its catalog and stores serve every generation. */
  #base: Runtime | undefined;
  #wake: NodeJS.Timeout | undefined;

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
        clouds: () => this.clouds(),
        metricsRegistries: [this.metrics.registry],
        readiness: [{ name: 'sync runs', check: () => this.#runsHealthy() }],
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
        sharing: await sharingSummary(this.#server!.catalog, name),
      });
    }
    return out;
  }

  /** The clouds for the API's /clouds: status, with the last run summarised as every run listing is. */
  async clouds(): Promise<CloudSummary[]> {
    const out: CloudSummary[] = [];
    for (const status of await this.status()) {
      const last = status.lastRun ? await this.#server!.catalog.runs.get(status.lastRun.id) : undefined;
      out.push({
        name: status.name,
        adapter: status.adapter,
        enabled: status.enabled,
        running: status.running,
        ...(status.running ? { transfers: this.#transfers.snapshot(status.name) } : {}),
        ...(status.schedule ? { schedule: status.schedule } : {}),
        ...(status.nextRun ? { nextRun: status.nextRun } : {}),
        ...(last ? { lastRun: summariseRun(last) } : {}),
        ...(status.error ? { error: status.error } : {}),
      });
    }
    return out;
  }

  /** What a run of the target would do now (the cloud is read, nothing is changed). */
  async plan(name: string): Promise<Plan> {
    const generation = this.#generation;
    const target = generation?.built.targets.get(name);
    if (!generation || !target) {
      const missing = new VisorError('notFound', `no cloud named ${name} in the configuration`);
      throw generation?.built.failed.get(name) ?? missing;
    }
    return planTarget(target, generation.deps, { signal: this.#stop.signal });
  }

  /**
   * Not ready when an enabled cloud's last `agent.unreadyAfterFailures` runs all failed: one
   * failed run is a blip the next one may fix; several in a row need an operator.
   */
  async #runsHealthy(): Promise<void> {
    const generation = this.#generation;
    if (!generation) throw new VisorError('unavailable', 'the agent is starting');
    const threshold = generation.runtime.config.agent.unreadyAfterFailures;
    const failing: string[] = [];
    for (const [name, cloud] of Object.entries(generation.runtime.config.clouds)) {
      if (!cloud.sync.enabled) continue;
      const runs = await this.#server!.catalog.runs.list({ target: name, limit: threshold });
      const real = runs.filter((r) => !r.dryRun);
      if (real.length >= threshold && real.every((r) => r.status === 'failed')) failing.push(name);
    }
    if (failing.length > 0) {
      throw new VisorError('unavailable', `the last ${threshold} runs failed for ${failing.join(', ')}`);
    }
  }

  /**
   * Runs again only what failed in the target (see failedImages), or only `imageId` there: a run
   * limited to those images, recorded with the trigger `retry`. Refused while a run of the target goes on.
   */
  async retryFailed(name: string, imageId?: string): Promise<{ images: string[]; run: Promise<RunRecord> }> {
    this.#targetOf(name);
    if (this.#running.has(name)) {
      throw new VisorError('conflict', `a run of ${name} is going on: retry what failed once it ends`);
    }
    const images = await failedImages(this.#server!.catalog, name, imageId);
    if (this.#running.has(name)) {
      throw new VisorError('conflict', `a run of ${name} is going on: retry what failed once it ends`);
    }
    return { images: [...images], run: this.trigger(name, 'retry', images) };
  }

  #targetOf(name: string): void {
    const generation = this.#generation;
    if (generation?.built.targets.get(name)) return;
    throw (
      generation?.built.failed.get(name) ?? new VisorError('notFound', `no cloud named ${name} in the configuration`)
    );
  }

  /** Runs a target now (manual trigger); a run already going on is joined, not duplicated. */
  trigger(
    name: string,
    trigger: RunRecord['trigger'] = 'manual',
    onlyImages?: ReadonlySet<string>,
  ): Promise<RunRecord> {
    const existing = this.#running.get(name);
    if (existing) return existing;
    const generation = this.#generation;
    const target = generation?.built.targets.get(name);
    if (!generation || !target) {
      const failed = generation?.built.failed.get(name);
      return Promise.reject(failed ?? new VisorError('notFound', `no cloud named ${name} in the configuration`));
    }
    if (this.#stop.signal.aborted) return Promise.reject(new VisorError('unavailable', 'the agent is stopping'));
    const onEvent = this.#transfers.listener(name);
    const only = onlyImages ? { onlyImages } : {};
    const run = syncTarget(target, generation.deps, { trigger, signal: this.#stop.signal, onEvent, ...only })
      .then(async (record) => {
        this.metrics.recordRun(record);
        return this.#notify(record, generation);
      })
      .finally(() => {
        this.#running.delete(name);
        this.#transfers.finished(name);
      });
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
    await old?.changes?.stop();
    await this.#activate(runtime, true);
    if (old) {
      for (const task of old.tasks.values()) await task.destroy();
      void old.subscriptions.stop();
      // Drivers of the old generation close once the runs using them are done.
      void Promise.allSettled([...this.#running.values()]).then(() => old.runtime.close());
    }
    log.info('configuration reloaded', { clouds: Object.keys(runtime.config.clouds) });
  }

  /**
   * Stops scheduling, waits up to `graceMs` (agent.stopGraceSeconds) for running syncs, then
   * aborts them and gives them `stopPhases.cleanupSeconds` to clean up, then lets API requests
   * finish for up to `stopPhases.requestsSeconds`. The worst case is `worstCaseStopSeconds`.
   */
  async stop(graceMs = (this.#base?.config.agent.stopGraceSeconds ?? 60) * 1000): Promise<void> {
    const generation = this.#generation;
    clearTimeout(this.#wake);
    await generation?.changes?.stop();
    for (const task of generation?.tasks.values() ?? []) await task.destroy();
    const subscriptions = generation ? [generation.subscriptions.stop()] : [];
    const running = Promise.allSettled([...this.#running.values(), ...subscriptions]);
    const timer = setTimeout(() => this.#stop.abort(new VisorError('unavailable', 'the agent is stopping')), graceMs);
    timer.unref();
    const cleanupMs = graceMs + stopPhases.cleanupSeconds * 1000;
    const leftOver = await Promise.race([running.then(() => false), delay(cleanupMs).then(() => true)]);
    if (leftOver) this.#logger?.error('runs still cleaning up when the stop deadline passed; stopping anyway');
    clearTimeout(timer);
    this.#stop.abort();
    await generation?.runtime.close();
    await this.#server?.close(stopPhases.requestsSeconds * 1000);
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
    const changes = await this.#watchChanges(built, runtime);
    const generation: Generation = { runtime, built, deps, tasks, subscriptions: undefined as never, changes };
    generation.subscriptions = new SubscriptionScheduler({
      runtime,
      logger: this.#logger!,
      agent: agentId,
      signal: this.#stop.signal,
      onRun: async (record) => {
        const changed = record.actions.some((a) => changingResults.has(a.result));
        if (changed && !this.#server!.catalog.changes) this.#wakeClouds();
        return this.#notify(record, generation);
      },
    });
    this.#generation = generation;
    if (!reload)
      this.#logger!.info('agent started', {
        agent: agentId,
        clouds: [...built.targets.keys()],
        scheduled: [...tasks.keys()],
        onChange: changes ? [...built.targets.values()].filter((t) => wantsChanges(t)).map((t) => t.name) : [],
      });
  }

  /** The change watch of a generation: the enabled clouds with `sync.triggers.onChange`, over the catalog's feed. */
  async #watchChanges(built: BuiltTargets, runtime: Runtime): Promise<ChangeWatch | undefined> {
    const targets = [...built.targets.values()].filter(wantsChanges);
    if (targets.length === 0) return undefined;
    const feed = this.#server!.catalog.changes;
    if (!feed) {
      this.#logger!.info('the catalog keeps no change feed: clouds sync on their schedule (and subscriptions)', {
        catalog: this.#server!.catalog.kind,
      });
      return undefined;
    }
    const watch = new ChangeWatch({
      feed,
      targets: targets.map((t) => ({
        name: t.name,
        selects: selectorFor(t.policy, t.name),
        debounceMs: t.policy.triggers.debounce,
        maxDelayMs: t.policy.triggers.maxDelay,
      })),
      pollMs: runtime.config.agent.changePoll,
      logger: this.#logger!.child({ component: 'change-watch' }),
      wake: (name, changes) => {
        if (this.#running.has(name)) return false;
        if (this.#stop.signal.aborted) return true;
        this.#logger!.info('catalog changed; syncing the cloud', { target: name, changes });
        this.trigger(name, 'change').catch((error: unknown) =>
          this.#logger!.warn('sync after a catalog change failed', { target: name, error: toVisorError(error) }),
        );
        return true;
      },
    });
    await watch.start();
    return watch;
  }

  /** Runs a subscription of the config now, as its schedule would. */
  syncSubscription(name: string): Promise<RunRecord> {
    const generation = this.#generation;
    if (!generation?.runtime.config.subscriptions[name]) {
      return Promise.reject(new VisorError('notFound', `no subscription named ${name} in the configuration`));
    }
    return generation.subscriptions.run(name, 'manual');
  }

  /**
   * The catalog changed (a subscription imported or retired images): every enabled cloud syncs
   * soon, once for a burst of changes, in addition to its schedule.
   */
  #wakeClouds(): void {
    clearTimeout(this.#wake);
    this.#wake = setTimeout(() => {
      const generation = this.#generation;
      if (!generation || this.#stop.signal.aborted) return;
      for (const [name, target] of generation.built.targets) {
        if (!wantsChanges(target)) continue;
        this.trigger(name, 'change').catch((error: unknown) =>
          this.#logger!.warn('woken sync failed', { target: name, error: toVisorError(error) }),
        );
      }
    }, wakeDebounceMs);
    this.#wake.unref();
  }

  /** Sends a finished run's lifecycle events to the configured webhooks and records the deliveries in the run. */
  async #notify(record: RunRecord, generation: Generation): Promise<RunRecord> {
    const hooks = generation.runtime.config.webhooks;
    if (hooks.length === 0) return record;
    const deliveries = await deliverWebhooks(hooks, record, this.#logger!, { signal: this.#stop.signal });
    if (deliveries.length === 0) return record;
    const updated = { ...record, actions: [...record.actions, ...deliveries] };
    await this.#server!.catalog.runs.update(updated).catch((error: unknown) =>
      this.#logger!.warn('recording webhook deliveries failed', { error: toVisorError(error) }),
    );
    return updated;
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

function wantsChanges(target: Target): boolean {
  return target.policy.enabled && target.policy.triggers.onChange;
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
