import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import type { VisorClient } from '../../client/client.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';
import { VerifiedFileSink, VerifiedStreamSink } from '../download-sink.js';
import { humanSize } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { progressBar, type Progress } from '../progress.js';

interface GetOptions extends ClientOptions {
  save?: string;
  output?: string;
  force?: boolean;
}

export function getCommand(program: Command, io: CliIo): void {
  const command = program
    .command('get')
    .description("download an image's file (checksum verified; written atomically)")
    .argument('<id>')
    .option('-S, --save <dir>', 'folder to save into (default: the current one)')
    .option('-o, --output <file>', 'file to write, or - for standard output')
    .option('-f, --force', 'overwrite an existing file');
  withClientOptions(command).action(async (id: string, options: GetOptions) => {
    const { withInterrupts } = await import('../interrupt.js');
    const client = await clientFor(options, io);
    await withInterrupts(io, `the download of ${id}`, ({ signal }) => download(client, id, options, io, signal));
  });
}

async function download(
  client: VisorClient,
  id: string,
  options: { save?: string; output?: string; force?: boolean; json?: boolean },
  io: CliIo,
  signal: AbortSignal,
): Promise<void> {
  const toStdout = options.output === '-';
  // Set by the callback below (so not narrowed to their initial undefined).
  let sink = undefined as VerifiedFileSink | VerifiedStreamSink | undefined;
  let target = undefined as string | undefined;
  let bar = undefined as Progress | undefined;
  try {
    // The file name and the checks come with the answer's headers; the file is opened only then.
    // Ctrl-C aborts the transfer; the sink then removes its partial file (below).
    await client.downloadTo(
      id,
      async ({ size, meta }) => {
        const named = () => join(options.save ?? '.', safeFileName(meta['name'] ?? id, meta['format']));
        target = toStdout ? undefined : resolve(io.cwd, options.output ?? named());
        if (target && !options.force && (await exists(target))) {
          throw new VisorError('conflict', `${target} exists; use --force to overwrite it`);
        }
        const listed = meta['size'] === undefined ? undefined : Number(meta['size']);
        if (listed !== undefined && listed !== size) {
          const why = `the server sends ${size} bytes of image ${id}, whose catalog size is ${listed}`;
          throw new VisorError('integrity', why);
        }
        const progress = await progressBar(io, 'download', size, !options.json && !toStdout);
        bar = progress;
        const onProgress = (n: number) => progress.update(n);
        const sha256 = meta['sha256'];
        if (target) sink = await VerifiedFileSink.create(target, size, sha256, onProgress);
        else sink = new VerifiedStreamSink(io.stdout, size, sha256, onProgress);
        return sink;
      },
      { signal },
    );
    await sink!.finish();
  } catch (error) {
    await sink?.discard();
    throw error;
  } finally {
    bar?.stop();
  }
  if (!target) return;
  const { size, sha256 } = sink!;
  if (options.json) printJson(io, { id, file: target, size, sha256: sha256 ?? null });
  const checked = sha256 ? 'sha256 verified' : 'no checksum in the catalog to verify';
  if (!options.json) print(io, `Saved image ${id} to ${target} (${humanSize(size)}, ${checked})`);
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

function safeFileName(name: string, format: string | undefined): string {
  const base = name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'image';
  return format && !base.endsWith(`.${format}`) ? `${base}.${format}` : base;
}
