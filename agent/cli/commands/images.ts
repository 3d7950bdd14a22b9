import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import type { CliIo } from '../io.js';

/** Client options every image verb takes. */
export interface ClientOptions {
  url?: string;
  address?: string;
  port?: string;
  profile?: string;
  json?: boolean;
}

function withClientOptions(command: Command): Command {
  return command
    .option('--url <url>', 'visor API URL (default: $VISOR_URL, the profile, or http://127.0.0.1:4568)')
    .option('-a, --address <host>', 'API host (VISOR style; with --port)')
    .option('-p, --port <port>', 'API port (VISOR style; with --address)')
    .option('--profile <name>', 'profile in ~/.config/visor/credentials (default: $VISOR_PROFILE or "default")')
    .option('--json', 'print JSON');
}

const listOptions = (command: Command) =>
  command
    .option('-q, --query <query>', 'filters, e.g. "architecture=x86_64&format=qcow2" (any attribute or custom property)')
    .option('-s, --sort <attribute>', 'sort by this attribute (default _id)')
    .option('-d, --dir <dir>', 'asc or desc')
    .option('-l, --limit <n>', 'at most this many (default: all)');

/** VISOR's client verbs: brief, detail, head, get, add, update, delete. Heavy modules load on use. */
export function imageCommands(program: Command, io: CliIo): void {
  const run = (name: string) => async (...args: unknown[]) => {
    const { runImageCommand } = await import('./images-actions.js');
    await runImageCommand(name, args, io);
  };

  listOptions(withClientOptions(program.command('brief').description('list images the caller may see: id, name, architecture, type, format, store, size'))).action(run('brief'));
  listOptions(withClientOptions(program.command('detail').description('list images with all their metadata'))).action(run('detail'));
  withClientOptions(program.command('head').description('show the metadata of one image').argument('<id>')).action(run('head'));
  withClientOptions(
    program
      .command('get')
      .description("download an image's file (checksum verified; written atomically)")
      .argument('<id>')
      .option('-S, --save <dir>', 'folder to save into (default: the current one)')
      .option('-o, --output <file>', 'file to write, or - for standard output')
      .option('-f, --force', 'overwrite an existing file'),
  ).action(run('get'));
  withClientOptions(
    program
      .command('add')
      .description('register an image: key=value metadata (name and architecture required), and --file to upload or location=URL to reference')
      .argument('<metadata...>', 'key=value pairs, e.g. name="CentOS 6.2" architecture=i386 format=iso access=public')
      .option('-f, --file <path>', 'image file to upload')
      .addHelpText(
        'after',
        [
          '',
          'New images are private (access=private) unless you say otherwise, as in Glance: only you',
          'and admins see them. A cloud\'s default sync selector takes public images only, so a new',
          'image reaches no cloud until it is made public (access=public) or shared (access=shared',
          'members=alice,bob) and a cloud selects that access (clouds.<name>.sync.selector.access).',
        ].join('\n'),
      ),
  ).action(run('add'));
  withClientOptions(
    program
      .command('update')
      .description('change metadata (key=value; key= clears it) and/or upload the file')
      .argument('<id>')
      .argument('[metadata...]', 'key=value pairs')
      .option('-f, --file <path>', 'image file to upload'),
  ).action(run('update'));
  withClientOptions(program.command('delete').description('delete images (metadata and file)').argument('<ids...>')).action(run('delete'));
}

/** `key=value` arguments -> wire metadata: lists split on commas, numbers where the field is numeric, empty clears. */
export function parseKeyValues(pairs: readonly string[]): Record<string, string | number | string[] | null> {
  const out: Record<string, string | number | string[] | null> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new VisorError('invalidInput', `"${pair}" is not key=value`);
    const key = pair.slice(0, at).trim();
    const value = pair.slice(at + 1);
    if (key in out) throw new VisorError('invalidInput', `${key} is given twice`);
    if (value === '') out[key] = null;
    else if (key === 'tags' || key === 'members') out[key] = value.split(',').map((s) => s.trim()).filter(Boolean);
    else if ((key === 'min_disk' || key === 'min_ram') && /^\d+$/.test(value)) out[key] = Number(value);
    else out[key] = value;
  }
  return out;
}
