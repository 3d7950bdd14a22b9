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
  const command = program
    .command('delete')
    .description('delete images (metadata and file; kept restorable for lifecycle.softDelete, 7d by default)')
    .argument('<ids...>')
    .option('--purge', 'remove already deleted images for good, before their keeping period is over');
  withClientOptions(command).action(async (ids: string[], options: ClientOptions & { purge?: boolean }) => {
    const client = await clientFor(options, io);
    const { exitCodeFor } = await import('../exit-codes.js');
    const outcomes: Outcome[] = [];
    let exitCode: number | undefined;
    for (const id of ids) {
      try {
        const image = options.purge ? await client.lifecycle(id, 'purge') : await client.delete(id);
        outcomes.push({ id, deleted: true, image });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        outcomes.push({ id, deleted: false, error: message });
        exitCode ??= exitCodeFor(error);
      }
    }
    if (options.json) printJson(io, outcomes);
    else {
      for (const outcome of outcomes) {
        if (!outcome.deleted) {
          io.stderr.write(`visor: ${outcome.id}: not ${options.purge ? 'purged' : 'deleted'}: ${outcome.error}\n`);
          continue;
        }
        const { image } = outcome;
        const until =
          image['purge_after'] !== undefined && !options.purge
            ? `; restorable until ${String(image['purge_after'])}`
            : '';
        print(io, `${options.purge ? 'Purged' : 'Deleted'} image ${outcome.id} (${String(image['name'])})${until}`);
      }
    }
    if (exitCode !== undefined) process.exitCode = exitCode;
  });
}
