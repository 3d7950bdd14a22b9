import type { Command } from 'commander';
import { humanSize } from '../format.js';
import { print, printJson, table, type CliIo } from '../io.js';
import { clientFor, type ListOptions, listQuery, withListOptions } from '../client-options.js';

export function briefCommand(program: Command, io: CliIo): void {
  const command = program
    .command('brief')
    .description('list images the caller may see: id, name, architecture, type, format, store, size');
  withListOptions(command).action(async (options: ListOptions) => {
    const images = await (await clientFor(options, io)).list('brief', listQuery(options));
    if (options.json) {
      printJson(io, images);
      return;
    }
    const text = (value: unknown) => String(value ?? '-');
    const rows = images.map((i) => [
      String(i['_id']),
      String(i['name']),
      String(i['architecture']),
      text(i['type']),
      text(i['format']),
      text(i['store']),
      humanSize(i['size']),
    ]);
    print(io, table(['ID', 'NAME', 'ARCHITECTURE', 'TYPE', 'FORMAT', 'STORE', 'SIZE'], rows));
  });
}
