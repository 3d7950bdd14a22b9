import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import type { CliIo } from '../io.js';

export function serveCommand(program: Command, io: CliIo): void {
  program
    .command('serve')
    .description('run the image service API (with no config file: the embedded default, SQLite catalog + file store)')
    .option('-c, --config <file>', 'config file', io.env['VISOR_CONFIG'])
    .option('--data-dir <dir>', 'data directory (default: $VISOR_DATA_DIR or ~/.local/share/visor)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default 4568)')
    .action(async (opts: { config?: string; dataDir?: string; host?: string; port?: string }) => {
      const port = opts.port === undefined ? undefined : Number(opts.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new VisorError('invalidInput', `--port must be a TCP port (0-65535), got "${opts.port}"`);
      const { compose } = await import('../../compose.js');
      const { startServer } = await import('../../serve.js');
      const composition = await compose({ configFile: opts.config, dataDir: opts.dataDir, env: io.env });
      let server;
      try {
        server = await startServer(composition, { host: opts.host, port });
      } catch (error) {
        await composition.dispose();
        throw error;
      }
      const running = server;
      await new Promise<void>((resolveStop) => {
        const stop = (signal: string) => {
          composition.logger.info('stopping: finishing in-flight requests', { signal });
          void running.close().then(resolveStop, resolveStop);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      composition.logger.info('stopped');
    });
}
