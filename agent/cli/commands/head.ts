import type { Command } from 'commander';
import { keyValueBlock, orderDetail } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

export function headCommand(program: Command, io: CliIo): void {
  const command = program.command('head').description('show the metadata of one image').argument('<id>');
  withClientOptions(command).action(async (id: string, options: ClientOptions) => {
    const meta = await (await clientFor(options, io)).head(id);
    if (options.json) printJson(io, meta);
    else print(io, keyValueBlock(orderDetail(meta)));
  });
}
