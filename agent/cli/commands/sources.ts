import type { Command } from 'commander';
import type { RunRecord } from '../../../core/catalog/port.js';
import { print, printJson, table, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';
import { countResults, exitCodeOf } from '../sync-output.js';

/** `visor sources`: the subscriptions of the config (image lists and streams), synced into the catalog. */
export function sourcesCommand(program: Command, io: CliIo): void {
  const sources = program.command('sources').description('image lists and streams the catalog subscribes to (HEPiX, simplestreams)');

  withRuntimeFlags(sources.command('list').description('list the configured subscriptions and their last run'), io).action(
    async (flags: RuntimeFlags) => {
      const { openRuntime } = await import('../../runtime/open-runtime.js');
      const runtime = await openRuntime(runtimeOptions(flags, io));
      try {
        const catalog = await runtime.catalog();
        const rows = [];
        for (const [name, sub] of Object.entries(runtime.config.subscriptions)) {
          const [last] = await catalog.runs.list({ target: `source:${name}`, limit: 1 });
          rows.push({ name, source: sub.source, schedule: sub.schedule ?? '', retire: sub.retire, last });
        }
        if (flags.json) printJson(io, rows);
        else {
          const lines = rows.map((r) => [r.name, r.source, r.schedule || '-', r.retire, r.last ? `${r.last.status} ${r.last.startedAt}` : 'never']);
          print(io, rows.length ? table(['NAME', 'SOURCE', 'SCHEDULE', 'RETIRE', 'LAST RUN'], lines) : 'no subscriptions in the config');
        }
      } finally {
        await runtime.close();
      }
    },
  );

  withRuntimeFlags(
    sources
      .command('sync')
      .description('fetch and verify the lists now, import new images, retire what left (exit 0: done, 3: partly failed, 1: failed)')
      .argument('[name]', 'only this subscription'),
    io,
  ).action(async (name: string | undefined, flags: RuntimeFlags) => {
    const { openRuntime } = await import('../../runtime/open-runtime.js');
    const { syncSubscription } = await import('../../sources/importer.js');
    const runtime = await openRuntime(runtimeOptions(flags, io));
    try {
      const names = name !== undefined ? [name] : Object.keys(runtime.config.subscriptions).filter((n) => runtime.config.subscriptions[n]!.enabled);
      const catalog = await runtime.catalog();
      const images = await runtime.images();
      const runs: RunRecord[] = [];
      for (const subscription of names) {
        const source = await runtime.source(subscription);
        try {
          const config = runtime.config.subscriptions[subscription]!;
          runs.push(await syncSubscription({ name: subscription, ...subscriptionLimits(config) }, source, { catalog, images, logger: runtime.logger, trigger: 'cli' }));
        } finally {
          await source.close();
        }
      }
      if (flags.json) printJson(io, { runs });
      else if (runs.length === 0) print(io, 'no subscriptions in the config');
      else for (const run of runs) print(io, summary(run));
      process.exitCode = exitCodeOf(runs.map((r) => r.status));
    } finally {
      await runtime.close();
    }
  });
}

/** The importer's settings from a subscription's config. */
export function subscriptionLimits(config: {
  filters: string[];
  retire: 'deprecate' | 'delete' | 'keep';
  maxBandwidth?: number | undefined;
  concurrency: number;
  access: 'public' | 'private';
}) {
  return {
    filters: config.filters,
    retire: config.retire,
    ...(config.maxBandwidth !== undefined ? { maxBandwidth: config.maxBandwidth } : {}),
    concurrency: config.concurrency,
    access: config.access,
  };
}

function summary(run: RunRecord): string {
  const counts = Object.entries(countResults(run)).map(([k, v]) => `${v} ${k}`).join(', ') || 'nothing to do';
  const failures = run.actions.filter((a) => a.result === 'failed').map((a) => `\n  failed ${a.name ?? ''} (${a.detail ?? ''}): ${a.error?.message ?? ''}`);
  return `[${run.target}] ${run.status}${run.error ? `: ${run.error}` : ''} — ${counts}${failures.join('')}`;
}
