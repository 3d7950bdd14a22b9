import type { Command } from 'commander';
import type { WireImage } from '../../client/client.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

type Outcome = { id: string; deleted: true; image: WireImage } | { id: string; deleted: false; error: string };

/**
 * Deletes each id in turn and reports every outcome: one failure neither hides the images
 * already deleted nor stops the rest. The exit code is that of the first failure.
 */
export function deleteCommand(program: Command, io: CliIo): void {
  const command = program.command('delete').description('delete images (metadata and file)').argument('<ids...>');
  withClientOptions(command).action(async (ids: string[], options: ClientOptions) => {
    const client = await clientFor(options, io);
    const { exitCodeFor } = await import('../exit-codes.js');
    const outcomes: Outcome[] = [];
    let exitCode: number | undefined;
    for (const id of ids) {
      try {
        outcomes.push({ id, deleted: true, image: await client.delete(id) });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        outcomes.push({ id, deleted: false, error: message });
        exitCode ??= exitCodeFor(error);
      }
    }
    if (options.json) printJson(io, outcomes);
    else {
      for (const outcome of outcomes) {
        if (outcome.deleted) print(io, `Deleted image ${outcome.id} (${String(outcome.image['name'])})`);
        else io.stderr.write(`visor: ${outcome.id}: not deleted: ${outcome.error}\n`);
      }
    }
    if (exitCode !== undefined) process.exitCode = exitCode;
  });
}
