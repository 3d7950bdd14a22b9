import type { Command } from 'commander';
import type { CloudPlacement } from '../../sync/placements.js';
import { clientFor, type ClientOptions, withClientOptions } from '../client-options.js';
import { print, printJson, table, type CliIo } from '../io.js';

interface Where {
  image: { id: string; name: string; access: string };
  clouds: CloudPlacement[];
}

export function whereCommand(program: Command, io: CliIo): void {
  withClientOptions(
    program
      .command('where')
      .argument('<id>', 'image id')
      .description('which clouds hold an image: status there, native ids and names, since when, last verified'),
  ).action(async (id: string, options: ClientOptions) => {
    const client = await clientFor(options, io);
    const where = (await client.getJson(`/images/${encodeURIComponent(id)}/where`)) as Where;
    if (options.json) return printJson(io, where);
    if (where.clouds.length === 0) return print(io, `${where.image.name} (${where.image.id}): no clouds configured.`);
    const rows = where.clouds.map((c) => [
      c.target,
      c.status,
      c.copies.map((copy) => copy.nativeId).join(', ') || '-',
      c.copies.map((copy) => copy.name).join(', ') || '-',
      c.since ?? '-',
      c.verified?.at ?? 'never',
      c.detail ?? '',
    ]);
    const head = `${where.image.name} (${where.image.id})`;
    print(io, `${head}\n${table(['CLOUD', 'STATUS', 'NATIVE ID', 'NAME THERE', 'SINCE', 'VERIFIED', 'DETAIL'], rows)}`);
  });
}
