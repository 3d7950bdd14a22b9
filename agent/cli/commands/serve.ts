import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { parsePort, type RuntimeFlags, runtimeOptions, untilStopped, withRuntimeFlags } from '../options.js';

export function serveCommand(program: Command, io: CliIo): void {
  const command = program
    .command('serve')
    .description('run the image service API (with no config file: the embedded default, SQLite catalog + file store)');
  withRuntimeFlags(command, io, { json: false })
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default 4568)')
    .action(async (flags: RuntimeFlags & { host?: string; port?: string }) => {
      const port = parsePort(flags.port);
      const { openRuntime } = await import('../../runtime/open-runtime.js');
      const { startServer } = await import('../../serve.js');
      const runtime = await openRuntime(runtimeOptions(flags, io));
      const running = await startServer(runtime, { host: flags.host, port }).catch(async (error: unknown) => {
        await runtime.close();
        throw error;
      });
      await untilStopped((signal) => {
        runtime.logger.info('stopping: finishing in-flight requests', { signal });
        return running.close();
      });
      runtime.logger.info('stopped');
    });
}
