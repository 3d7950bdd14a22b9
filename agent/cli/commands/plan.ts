import type { Command } from 'commander';
import type { Plan } from '../../sync/planner.js';
import { ExitCode } from '../exit-codes.js';
import { print, printJson, table, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';
import { planJson } from '../../sync/plan-view.js';
import { planHeaders, planRows } from '../sync-output.js';

export function planCommand(program: Command, io: CliIo): void {
  withRuntimeFlags(program.command('plan').description('show what a sync would do, per cloud (nothing is changed)'), io)
    .option('-t, --target <cloud>', 'only this cloud')
    .action(async (flags: RuntimeFlags & { target?: string }) => {
      const { openSession } = await import('../../session.js');
      const { planTarget } = await import('../../sync/runner.js');
      const session = await openSession(runtimeOptions(flags, io), flags.target);
      try {
        const plans: Plan[] = [];
        const failures: string[] = [];
        for (const target of session.built.targets.values()) {
          try {
            plans.push(await planTarget(target, session.deps));
          } catch (error) {
            failures.push(`${target.name}: ${(error as Error).message}`);
          }
        }
        for (const [target, error] of session.built.failed) failures.push(`${target}: ${error.message}`);
        if (flags.json) printJson(io, { plans: plans.map(planJson), failures });
        else {
          const rows = plans.flatMap(planRows);
          print(
            io,
            rows.length > 0 ? table(planHeaders, rows) : 'Every cloud is in step with the catalog: nothing to do.',
          );
          for (const p of plans)
            for (const note of p.notes) print(io, `note [${p.target}] ${note.name}: ${note.message}`);
          for (const f of failures) io.stderr.write(`visor: cannot plan ${f}\n`);
        }
        if (failures.length > 0) process.exitCode = plans.length > 0 ? ExitCode.partial : ExitCode.failure;
      } finally {
        await session.close();
      }
    });
}
