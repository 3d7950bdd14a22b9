import type { Command } from 'commander';
import { keyValueBlock, orderDetail } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';

interface DeprecateOptions extends ClientOptions {
  replacement?: string;
  obsoleteOn?: string;
  deleteOn?: string;
  obsolete?: boolean;
}

export function deprecateCommand(program: Command, io: CliIo): void {
  const command = program
    .command('deprecate')
    .description('deprecate an image: still usable, flagged, pointing at its replacement; optionally scheduled further')
    .argument('<id>')
    .option('--replacement <id>', 'the image to use instead')
    .option(
      '--obsolete-on <date>',
      'hide or disable it for new launches from this date (2027-01-31 or an ISO date-time)',
    )
    .option('--delete-on <date>', 'delete it (softly: restorable for lifecycle.softDelete) from this date')
    .option('--obsolete', 'make it obsolete now rather than deprecated');
  withClientOptions(command).action(async (id: string, options: DeprecateOptions) => {
    const body: Record<string, string> = {};
    if (options.replacement !== undefined) body['replacement'] = options.replacement;
    if (options.obsoleteOn !== undefined) body['obsolete_on'] = options.obsoleteOn;
    if (options.deleteOn !== undefined) body['delete_on'] = options.deleteOn;
    if (options.obsolete) body['state'] = 'obsolete';
    const image = await (await clientFor(options, io)).lifecycle(id, 'deprecate', body);
    if (options.json) printJson(io, image);
    else print(io, `Deprecated image ${String(image['_id'])}\n${keyValueBlock(orderDetail(image))}`);
  });
}
