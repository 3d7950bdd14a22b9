import { Command, CommanderError } from 'commander';
import { isVisorError, userErrorKinds } from '../../core/errors.js';
import { addCommand } from './commands/add.js';
import { agentCommand } from './commands/agent.js';
import { briefCommand } from './commands/brief.js';
import { catalogCommand } from './commands/catalog.js';
import { configCommand } from './commands/config.js';
import { deleteCommand } from './commands/delete.js';
import { detailCommand } from './commands/detail.js';
import { getCommand } from './commands/get.js';
import { headCommand } from './commands/head.js';
import { migrateCommand } from './commands/migrate.js';
import { planCommand } from './commands/plan.js';
import { pluginsCommand } from './commands/plugins.js';
import { serveCommand } from './commands/serve.js';
import { statusCommand } from './commands/status.js';
import { syncCommand } from './commands/sync.js';
import { triggerCommand } from './commands/trigger.js';
import { updateCommand } from './commands/update.js';
import { usersCommand } from './commands/users.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import type { CliIo } from './io.js';
import { version } from './version.js';

/** Adds one top-level command (its options and action) to the program. */
export type CommandDefinition = (program: Command, io: CliIo) => void;

/**
 * Every command, one file each under commands/, in the order `visor help` lists them. A command
 * file imports only what defining it needs; its action imports the rest when it runs.
 */
export const commands: readonly CommandDefinition[] = [
  serveCommand,
  agentCommand,
  planCommand,
  syncCommand,
  statusCommand,
  triggerCommand,
  migrateCommand,
  briefCommand,
  detailCommand,
  headCommand,
  getCommand,
  addCommand,
  updateCommand,
  deleteCommand,
  usersCommand,
  pluginsCommand,
  configCommand,
  catalogCommand,
];

export function buildProgram(io: CliIo): Command {
  const program = new Command('visor')
    .description('visor: one catalog of VM images, kept in step with Glance, OpenNebula, Eucalyptus and Nimbus')
    .version(version, '-V, --version')
    .option('--debug', 'show stack traces of internal errors')
    .showHelpAfterError('(run visor help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });
  for (const define of commands) define(program, io);
  for (const command of program.commands) command.exitOverride();
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  const debug = argv.includes('--debug') || io.env['VISOR_DEBUG'] === '1';
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or the help/version text).
      return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    return reportError(error, io, debug);
  }
}

/** User mistakes: one clear message, no stack. Bugs: the message, and the stack with --debug. */
export function reportError(error: unknown, io: CliIo, debug: boolean): number {
  if (isVisorError(error) && userErrorKinds.has(error.kind)) {
    io.stderr.write(`visor: ${error.message}\n`);
    if (debug && error.cause instanceof Error && error.cause.stack) io.stderr.write(`${error.cause.stack}\n`);
  } else {
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`visor: internal error: ${message}\n`);
    if (debug && error instanceof Error && error.stack) io.stderr.write(`${error.stack}\n`);
    else io.stderr.write('visor: (run with --debug for the stack trace)\n');
  }
  return exitCodeFor(error);
}
