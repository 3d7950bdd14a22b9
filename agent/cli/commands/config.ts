import type { Command } from 'commander';
import { print, printJson, type CliIo } from '../io.js';
import { ExitCode } from '../exit-codes.js';

export function configCommand(program: Command, io: CliIo): void {
  const config = program.command('config').description('check and show configuration files');

  config
    .command('validate')
    .description(
      'check a config file: YAML, keys, types, ${ENV} references, plugins and their options (exit 0 when valid)',
    )
    .argument('[file]', 'the YAML config file (default: -c, then $VISOR_CONFIG)')
    .option('-c, --config <file>', 'the YAML config file, as for every other command', io.env['VISOR_CONFIG'])
    .option('--json', 'print the result as JSON')
    .action(async (given: string | undefined, opts: { json?: boolean; config?: string }, command: Command) => {
      const { VisorError } = await import('../../../core/errors.js');
      const explicit = command.getOptionValueSource('config') === 'cli';
      if (given !== undefined && explicit && given !== opts.config) {
        throw new VisorError('invalidInput', `two config files named: ${given} and -c ${opts.config}`);
      }
      const file = given ?? opts.config;
      if (file === undefined) {
        throw new VisorError(
          'invalidInput',
          'name the config file: visor config validate FILE, -c FILE or $VISOR_CONFIG',
        );
      }
      const { ConfigError, loadConfig } = await import('../../../core/config/load.js');
      const { builtinRegistry } = await import('../../builtins.js');
      try {
        const cfg = await loadConfig({ file, env: io.env, registry: builtinRegistry() });
        const summary = {
          valid: true,
          file: cfg.file,
          catalog: cfg.catalog.type,
          stores: Object.keys(cfg.stores),
          defaultStore: cfg.defaultStore,
          clouds: Object.fromEntries(Object.entries(cfg.clouds).map(([name, c]) => [name, c.adapter])),
          plugins: cfg.plugins,
        };
        if (opts.json) printJson(io, summary);
        else {
          const clouds =
            Object.entries(summary.clouds)
              .map(([n, a]) => `${n} (${a})`)
              .join(', ') || 'none';
          print(
            io,
            `${file}: valid — catalog ${summary.catalog}, ` +
              `stores ${summary.stores.join(', ')} (default ${summary.defaultStore}), clouds ${clouds}`,
          );
        }
      } catch (error) {
        if (!(error instanceof ConfigError) || !opts.json) throw error;
        printJson(io, { valid: false, file, issues: error.issues });
        process.exitCode = ExitCode.usage;
      }
    });

  config
    .command('show')
    .description('print the effective configuration (defaults filled in, secrets masked)')
    .option('-c, --config <file>', 'the YAML config file (default: the embedded default)', io.env['VISOR_CONFIG'])
    .option('--data-dir <dir>', 'data directory')
    .action(async (opts: { config?: string; dataDir?: string }) => {
      const { loadConfig } = await import('../../../core/config/load.js');
      const { collectSecrets, SecretRegistry } = await import('../../../core/logging/redact.js');
      const { builtinRegistry } = await import('../../builtins.js');
      const cfg = await loadConfig({
        file: opts.config,
        dataDir: opts.dataDir,
        env: io.env,
        registry: builtinRegistry(),
      });
      const secrets = new SecretRegistry();
      collectSecrets(cfg, secrets);
      printJson(io, secrets.redact(cfg));
    });
}
