import type { Command } from 'commander';
import type { CliIo } from '../io.js';

/** `visor catalog migrate` and `visor catalog copy`: the catalog's schema and moving it elsewhere. Loaded on use. */
export function catalogCommands(program: Command, io: CliIo): void {
  const catalog = program
    .command('catalog')
    .description('the catalog itself: its schema, and copying it to another catalog');
  catalog
    .command('migrate')
    .description("bring the catalog's schema up to date (forward only, under a lock: safe while other servers run)")
    .option('-c, --config <file>', 'config file', io.env['VISOR_CONFIG'])
    .option('--data-dir <dir>', 'data directory (default: $VISOR_DATA_DIR or ~/.local/share/visor)')
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; dataDir?: string; json?: boolean }) => {
      const { runMigrate } = await import('./catalog-actions.js');
      await runMigrate(opts, io);
    });
  catalog
    .command('copy')
    .description(
      'copy a whole catalog (images, users with their sealed secrets, run history, agent state) into an empty one, ' +
        'then compare counts and checksums (run it with the servers and agents of the source stopped)',
    )
    .requiredOption('--from <config>', 'config file of the source catalog')
    .requiredOption('--to <config>', 'config file of the destination catalog (must be empty)')
    .option('--json', 'print JSON')
    .action(async (opts: { from: string; to: string; json?: boolean }) => {
      const { runCopy } = await import('./catalog-actions.js');
      await runCopy(opts, io);
    });
}
