import type { Command } from 'commander';
import type { WireImage } from '../../client/client.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

export function deleteCommand(program: Command, io: CliIo): void {
  const command = program.command('delete').description('delete images (metadata and file)').argument('<ids...>');
  withClientOptions(command).action(async (ids: string[], options: ClientOptions) => {
    const client = await clientFor(options, io);
    const deleted: WireImage[] = [];
    for (const id of ids) deleted.push(await client.delete(id));
    if (options.json) printJson(io, deleted);
    else for (const image of deleted) print(io, `Deleted image ${String(image['_id'])} (${String(image['name'])})`);
  });
}
