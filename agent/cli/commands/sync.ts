import type { Command } from 'commander';
import type { RunRecord } from '../../../core/catalog/port.js';
import type { Plan } from '../../sync/planner.js';
import { print, printJson, table, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';
import { countResults, exitCodeOf, planHeaders, planRows, progressPrinter } from '../sync-output.js';

export function syncCommand(program: Command, io: CliIo): void {
  const command = program
    .command('sync')
    .description('sync the clouds with the catalog now (exit 0: all done, 3: partly failed, 1: failed)');
  withRuntimeFlags(command, io)
    .option('-t, --target <cloud>', 'only this cloud')
    .option('--dry-run', 'plan only; change nothing')
    .action(async (flags: RuntimeFlags & { target?: string; dryRun?: boolean }) => {
      const { openSession } = await import('../../session.js');
      const { syncTarget } = await import('../../sync/runner.js');
      const session = await openSession(runtimeOptions(flags, io), flags.target, { serveContent: !flags.dryRun });
      try {
        const targets = [...session.built.targets.values()].filter(
          (t) => t.policy.enabled || flags.target !== undefined,
        );
        const showPlan = (plan: Plan) =>
          print(io, plan.actions.length ? table(planHeaders, planRows(plan)) : `[${plan.target}] nothing to do`);
        const runs = await Promise.all(
          targets.map((target) =>
            syncTarget(target, session.deps, {
              trigger: 'cli',
              ...(flags.dryRun ? { dryRun: true } : {}),
              ...(flags.json ? {} : { onEvent: progressPrinter(io, target.name) }),
              ...(flags.dryRun && !flags.json ? { onPlan: showPlan } : {}),
            }),
          ),
        );
        const failedDrivers = [...session.built.failed].map(([target, error]) => ({ target, error: error.message }));
        if (flags.json) printJson(io, { runs, failedClouds: failedDrivers });
        else {
          for (const run of runs) print(io, summary(run));
          for (const f of failedDrivers) io.stderr.write(`visor: cloud ${f.target} is unusable: ${f.error}\n`);
        }
        process.exitCode = exitCodeOf([...runs.map((r) => r.status), ...failedDrivers.map(() => 'failed' as const)]);
      } finally {
        await session.close();
      }
    });
}

function summary(run: RunRecord): string {
  const counts =
    Object.entries(countResults(run))
      .map(([k, v]) => `${v} ${k}`)
      .join(', ') || 'nothing to do';
  const left = run.drift ? `; ${run.drift} still to do` : '';
  return `[${run.target}] ${run.status}${run.error ? `: ${run.error}` : ''} — ${counts}${left}`;
}
