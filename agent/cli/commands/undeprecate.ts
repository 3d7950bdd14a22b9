import type { Command } from 'commander';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

export function undeprecateCommand(program: Command, io: CliIo): void {
  const command = program
    .command('undeprecate')
    .description('make a deprecated or obsolete image active again (its schedule is dropped)')
    .argument('<id>');
  withClientOptions(command).action(async (id: string, options: ClientOptions) => {
    const image = await (await clientFor(options, io)).lifecycle(id, 'undeprecate');
    if (options.json) printJson(io, image);
    else print(io, `Image ${String(image['_id'])} (${String(image['name'])}) is active again`);
  });
}
