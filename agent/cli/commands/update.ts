import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { keyValueBlock, orderDetail } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { type ClientOptions, clientFor, parseKeyValues, withClientOptions } from '../client-options.js';
import { withUploadFile } from '../upload-file.js';

export function updateCommand(program: Command, io: CliIo): void {
  const command = program
    .command('update')
    .description('change metadata (key=value; key= clears it) and/or upload the file')
    .argument('<id>')
    .argument('[metadata...]', 'key=value pairs')
    .option('-f, --file <path>', 'image file to upload');
  withClientOptions(command).action(
    async (id: string, pairs: string[] | undefined, options: ClientOptions & { file?: string }) => {
      const meta = parseKeyValues(pairs ?? []);
      if (!options.file && Object.keys(meta).length === 0) {
        throw new VisorError('invalidInput', 'nothing to update: give key=value pairs and/or --file');
      }
      const client = await clientFor(options, io);
      const image = options.file
        ? await withUploadFile(options.file, io, !options.json, (upload) => client.update(id, meta, upload))
        : await client.update(id, meta);
      if (options.json) printJson(io, image);
      else print(io, `Updated image ${String(image['_id'])}\n${keyValueBlock(orderDetail(image))}`);
    },
  );
}
