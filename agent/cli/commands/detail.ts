import type { Command } from 'commander';
import { keyValueBlock, orderDetail } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { clientFor, type ListOptions, listQuery, withListOptions } from '../client-options.js';

export function detailCommand(program: Command, io: CliIo): void {
  withListOptions(program.command('detail').description('list images with all their metadata')).action(
    async (options: ListOptions) => {
      const images = await (await clientFor(options, io)).list('detail', listQuery(options));
      if (options.json) printJson(io, images);
      else print(io, images.map((i) => keyValueBlock(orderDetail(i))).join('\n\n') || '(no images)');
    },
  );
}
