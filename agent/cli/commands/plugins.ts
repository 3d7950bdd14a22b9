import type { Command } from 'commander';
import { print, printJson, table, type CliIo } from '../io.js';

export function pluginsCommand(program: Command, io: CliIo): void {
  program
    .command('plugins')
    .description('list the registered catalogs, stores and IaaS adapters (built-in and from the config\'s "plugins")')
    .option('-c, --config <file>', 'config file whose third-party plugins to load too', io.env['VISOR_CONFIG'])
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; json?: boolean }) => {
      const { loadSetup } = await import('../../runtime/open-runtime.js');
      const { silentLogger } = await import('../../../core/logging/logger.js');
      // Only the config and its plugin packages are read: nothing is opened to list plugins.
      const { registry } = await loadSetup({ configFile: opts.config, env: io.env, logger: silentLogger });
      const plugins = registry.list();
      if (opts.json) printJson(io, plugins);
      else {
        const rows = plugins.map((p) => [p.kind, p.id, p.source, p.description]);
        print(io, table(['KIND', 'ID', 'SOURCE', 'DESCRIPTION'], rows));
      }
    });
}
