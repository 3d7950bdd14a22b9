import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { print, printJson, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';
import { exitCodeOf, progressPrinter } from '../sync-output.js';

const collect = (value: string, all: string[] = []) => [...all, value];

export function migrateCommand(program: Command, io: CliIo): void {
  const command = program
    .command('migrate')
    .description('copy images from one cloud to another through the catalog: pull from --from, push to --to');
  withRuntimeFlags(command, io)
    .requiredOption('--from <cloud>', 'cloud to take images from')
    .requiredOption('--to <cloud>', 'cloud to put them in')
    .option('--name <glob>', 'only images whose name matches (repeatable)', collect)
    .option('--id <nativeId>', 'only this image of the source cloud (repeatable)', collect)
    .action(async (flags: RuntimeFlags & { from: string; to: string; name?: string[]; id?: string[] }) => {
      if (flags.from === flags.to) throw new VisorError('invalidInput', '--from and --to name the same cloud');
      const { openSession } = await import('../../session.js');
      const { migrate } = await import('../../sync/migrate.js');
      const { withInterrupts } = await import('../interrupt.js');
      const session = await openSession(runtimeOptions(flags, io), undefined, { serveContent: true });
      // Ctrl-C or SIGTERM aborts the pulls and the push: transfers in flight clean up after
      // themselves (no partial image in either cloud or the catalog), the push's run is recorded
      // and its lease released, then exit 130/143.
      await withInterrupts(io, 'the migration', async ({ signal }) => {
        try {
          const [source, destination] = [flags.from, flags.to].map((name) => {
            const target = session.built.targets.get(name);
            if (target) return target;
            throw (
              session.built.failed.get(name) ??
              new VisorError('invalidInput', `no cloud named ${name} in the configuration`)
            );
          });
          const migration = await migrate(source!, destination!, session.deps, {
            signal,
            ...(flags.name ? { names: flags.name } : {}),
            ...(flags.id ? { ids: flags.id } : {}),
            ...(flags.json
              ? {}
              : { onPullEvent: progressPrinter(io, flags.from), onPushEvent: progressPrinter(io, flags.to) }),
          });
          const { pulled, run } = migration;
          if (flags.json) printJson(io, { pulled, run });
          else {
            const failed = pulled.filter((r) => r.result === 'failed').length;
            const pulls = `${migration.imageIds.size} image(s) pulled${failed ? `, ${failed} failed to pull` : ''}`;
            print(
              io,
              `migrate ${flags.from} -> ${flags.to}: ${pulls}; push ${run.status}${run.error ? `: ${run.error}` : ''}`,
            );
          }
          process.exitCode = exitCodeOf([migration.status]);
        } finally {
          await session.close();
        }
      });
    });
}
