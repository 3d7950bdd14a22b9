import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { parsePort, type RuntimeFlags, runtimeOptions, untilStopped, withRuntimeFlags } from '../options.js';

export function agentCommand(program: Command, io: CliIo): void {
  const command = program
    .command('agent')
    .description(
      'run the sync agent: the image API plus scheduled syncs of every configured cloud ' +
        '(SIGHUP reloads the config, SIGTERM stops)',
    );
  withRuntimeFlags(command, io)
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (default 4568)')
    .action(async (flags: RuntimeFlags & { host?: string; port?: string }) => {
      const port = parsePort(flags.port);
      // Imported here: the daemon brings the HTTP server framework, which one-shot commands do not need.
      const { AgentDaemon } = await import('../../daemon.js');
      const daemon = new AgentDaemon({ ...runtimeOptions(flags, io), host: flags.host, port });
      await daemon.start();
      const onHup = () => void daemon.reload().catch(() => undefined);
      process.on('SIGHUP', onHup);
      await untilStopped(() => {
        process.off('SIGHUP', onHup);
        return daemon.stop();
      });
    });
}
