import type { Command } from 'commander';
import type { CliIo } from '../io.js';

interface Common {
  config?: string;
  dataDir?: string;
  json?: boolean;
}

const common = (command: Command, io: CliIo) =>
  command
    .option('-c, --config <file>', 'config file', io.env['VISOR_CONFIG'])
    .option('--data-dir <dir>', 'data directory (default: $VISOR_DATA_DIR or ~/.local/share/visor)')
    .option('--json', 'print JSON');

/** The agent's commands: agent (the daemon), plan, sync, status, trigger, migrate. Loaded on use. */
export function syncCommands(program: Command, io: CliIo): void {
  const run = (name: string) => async (...args: unknown[]) => {
    const { runSyncCommand } = await import('./sync-actions.js');
    const command = args[args.length - 1] as Command;
    await runSyncCommand(name, args.slice(0, -2), command.opts(), io);
  };

  common(program.command('agent').description('run the sync agent: the image API plus scheduled syncs of every configured cloud (SIGHUP reloads the config, SIGTERM stops)'), io)
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default 4568)')
    .action(run('agent'));
  common(program.command('plan').description('show what a sync would do, per cloud (nothing is changed)'), io)
    .option('-t, --target <cloud>', 'only this cloud')
    .action(run('plan'));
  common(program.command('sync').description('sync the clouds with the catalog now (exit 0: all done, 3: partly failed, 1: failed)'), io)
    .option('-t, --target <cloud>', 'only this cloud')
    .option('--dry-run', 'plan only; change nothing')
    .action(run('sync'));
  common(program.command('status').description('last run, result, drift and next run of every cloud'), io)
    .option('--url <url>', 'ask a running agent (signed request) instead of reading the catalog')
    .action(run('status'));
  program
    .command('trigger')
    .description('ask a running agent to sync a cloud now (admin keys)')
    .argument('<cloud>')
    .option('--url <url>', 'agent URL (default: $VISOR_URL or http://127.0.0.1:4568)')
    .option('--wait', 'wait for the run to finish and print it')
    .option('--json', 'print JSON')
    .action(run('trigger'));
  common(program.command('migrate').description('copy images from one cloud to another through the catalog: pull from --from, push to --to'), io)
    .requiredOption('--from <cloud>', 'cloud to take images from')
    .requiredOption('--to <cloud>', 'cloud to put them in')
    .option('--name <glob>', 'only images whose name matches (repeatable)', (v: string, all: string[] = []) => [...all, v])
    .option('--id <nativeId>', 'only this image of the source cloud (repeatable)', (v: string, all: string[] = []) => [...all, v])
    .action(run('migrate'));
}
