import type { Command } from 'commander';
import { keyValueBlock, orderDetail } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, parseKeyValues, withClientOptions } from '../client-options.js';
import { type FileUpload, withUploadFile } from '../upload-file.js';

const privateByDefault = [
  '',
  'New images are private (access=private) unless you say otherwise, as in Glance: only you',
  "and admins see them. A cloud's default sync selector takes public images only, so a new",
  'image reaches no cloud until it is made public (access=public) or shared (access=shared',
  'members=alice,bob) and a cloud selects that access (clouds.<name>.sync.selector.access).',
].join('\n');

export function addCommand(program: Command, io: CliIo): void {
  const command = program
    .command('add')
    .description(
      'register an image: key=value metadata (name and architecture required), ' +
        'and --file to upload or location=URL to reference',
    )
    .argument('<metadata...>', 'key=value pairs, e.g. name="CentOS 6.2" architecture=i386 format=iso access=public')
    .option('-f, --file <path>', 'image file to upload')
    .addHelpText('after', privateByDefault);
  withClientOptions(command).action(async (pairs: string[], options: ClientOptions & { file?: string }) => {
    const meta = parseKeyValues(pairs);
    const client = await clientFor(options, io);
    const { withInterrupts } = await import('../interrupt.js');
    await withInterrupts(io, 'the upload', async ({ signal }) => {
      // An upload cut off mid-way: the server keeps neither the bytes nor the record made for them.
      const send = (upload: FileUpload) => client.add(meta, { ...upload, signal });
      const image = options.file ? await withUploadFile(options.file, io, !options.json, send) : await client.add(meta);
      if (options.json) printJson(io, image);
      else print(io, `Registered image ${String(image['_id'])}\n${keyValueBlock(orderDetail(image))}`);
    });
  });
}
