import type { Command } from 'commander';
import type { WireImage } from '../../client/client.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

export function deleteCommand(program: Command, io: CliIo): void {
  const command = program
    .command('delete')
    .description('delete images (metadata and file; kept restorable for lifecycle.softDelete when configured)')
    .argument('<ids...>')
    .option('--purge', 'remove already deleted images for good, before their keeping period is over');
  withClientOptions(command).action(async (ids: string[], options: ClientOptions & { purge?: boolean }) => {
    const client = await clientFor(options, io);
    const deleted: WireImage[] = [];
    for (const id of ids) deleted.push(options.purge ? await client.lifecycle(id, 'purge') : await client.delete(id));
    if (options.json) printJson(io, deleted);
    else {
      for (const image of deleted) {
        const until =
          image['purge_after'] !== undefined && !options.purge
            ? `; restorable until ${String(image['purge_after'])}`
            : '';
        print(
          io,
          `${options.purge ? 'Purged' : 'Deleted'} image ${String(image['_id'])} (${String(image['name'])})${until}`,
        );
      }
    }
  });
}
