import type { Command } from 'commander';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

export function restoreCommand(program: Command, io: CliIo): void {
  const command = program
    .command('restore')
    .description(
      'bring back a deleted image, with its file, before it is purged (list them: visor brief status=deleted)',
    )
    .argument('<ids...>');
  withClientOptions(command).action(async (ids: string[], options: ClientOptions) => {
    const client = await clientFor(options, io);
    const restored = [];
    for (const id of ids) restored.push(await client.lifecycle(id, 'restore'));
    if (options.json) printJson(io, restored);
    else
      for (const image of restored)
        print(io, `Restored image ${String(image['_id'])} (${String(image['name'])}), ${String(image['status'])}`);
  });
}
