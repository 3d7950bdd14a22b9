import { schedule, type ScheduledTask } from 'node-cron';
import type { RunRecord } from '../../core/catalog/port.js';
import { toVisorError } from '../../core/errors.js';
import type { Logger } from '../../core/logging/logger.js';
import type { Runtime } from '../runtime/open-runtime.js';
import { syncSubscription } from './importer.js';
import { subscriptionLimits } from './settings.js';

export interface SubscriptionSchedulerOptions {
  runtime: Runtime;
  logger: Logger;
  agent: string;
  signal: AbortSignal;
  /** Told of every finished run (webhooks, and waking the clouds when the catalog changed). */
  onRun: (run: RunRecord) => Promise<RunRecord>;
}

/** Results that change the catalog: the clouds then have something to catch up with. */
export const changingResults: ReadonlySet<string> = new Set(['imported', 'updated', 'retired']);

/**
 * Runs the config's subscriptions on their cron schedules inside `visor agent`, one run per
 * subscription at a time.
 */
export class SubscriptionScheduler {
  readonly #o: SubscriptionSchedulerOptions;
  readonly #tasks: ScheduledTask[] = [];
  readonly #running = new Map<string, Promise<RunRecord>>();

  constructor(options: SubscriptionSchedulerOptions) {
    this.#o = options;
    for (const [name, sub] of Object.entries(options.runtime.config.subscriptions)) {
      if (!sub.enabled || !sub.schedule) continue;
      const log = options.logger.child({ subscription: name });
      this.#tasks.push(
        schedule(
          sub.schedule,
          () =>
            this.run(name, 'schedule').then(
              () => undefined,
              (e: unknown) => log.error('subscription run failed', { error: toVisorError(e) }),
            ),
          {
            name: `visor:source:${name}`,
            noOverlap: true,
          },
        ),
      );
    }
  }

  get scheduled(): number {
    return this.#tasks.length;
  }

  /** Runs a subscription now (or joins the run in flight). */
  run(name: string, trigger: RunRecord['trigger'] = 'manual'): Promise<RunRecord> {
    const inFlight = this.#running.get(name);
    if (inFlight) return inFlight;
    const run = this.#run(name, trigger).finally(() => this.#running.delete(name));
    this.#running.set(name, run);
    return run;
  }

  async #run(name: string, trigger: RunRecord['trigger']): Promise<RunRecord> {
    const { runtime } = this.#o;
    const config = runtime.config.subscriptions[name];
    const source = await runtime.source(name);
    try {
      const deps = {
        catalog: await runtime.catalog(),
        images: await runtime.images(),
        logger: this.#o.logger,
        agent: this.#o.agent,
        trigger,
        signal: this.#o.signal,
      };
      const record = await syncSubscription({ name, ...subscriptionLimits(config!) }, source, deps);
      return await this.#o.onRun(record);
    } finally {
      await source.close();
    }
  }

  async stop(): Promise<void> {
    for (const task of this.#tasks) await task.destroy();
    await Promise.allSettled([...this.#running.values()]);
  }
}
