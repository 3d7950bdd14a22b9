import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import type { VisorClient } from '../../client/client.js';
import { type ClientOptions, clientFor, withClientOptions } from '../client-options.js';
import { humanSize } from '../format.js';
import { print, printJson, type CliIo } from '../io.js';
import { progressBar } from '../progress.js';

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

/** Checks the sha256 the server announced while the bytes are written: each byte read once. */
class Sha256Check extends Transform {
  readonly #hash = createHash('sha256');
  #bytes = 0;
  constructor(
    private readonly expected: string | undefined,
    private readonly onProgress: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    this.onProgress(this.#bytes);
    callback(null, chunk);
  }
  override _flush(callback: TransformCallback): void {
    const got = this.#hash.digest('hex');
    if (this.expected && got !== this.expected) {
      callback(
        new VisorError('integrity', `downloaded bytes do not match the image's sha256 (${got} != ${this.expected})`),
      );
    } else callback();
  }
}

async function download(
  client: VisorClient,
  id: string,
  options: { save?: string; output?: string; force?: boolean; json?: boolean },
  io: CliIo,
  signal: AbortSignal,
): Promise<void> {
  const { stream, size, meta } = await client.download(id);
  const toStdout = options.output === '-';
  const fileName = safeFileName(meta['name'] ?? id, meta['format']);
  const target = toStdout ? undefined : resolve(io.cwd, options.output ?? join(options.save ?? '.', fileName));
  if (
    target &&
    !options.force &&
    (await stat(target).then(
      () => true,
      () => false,
    ))
  ) {
    stream.destroy();
    throw new VisorError('conflict', `${target} exists; use --force to overwrite it`);
  }
  const bar = await progressBar(io, 'download', size, !options.json && !toStdout);
  const check = new Sha256Check(meta['sha256'], (n) => bar.update(n));
  try {
    if (!target) {
      await pipeline(stream, check, io.stdout, { signal });
      return;
    }
    // Written under a temporary name and renamed: an interrupted download never looks complete.
    const partial = join(resolve(target, '..'), `.${basename(target)}.part`);
    try {
      await pipeline(stream, check, createWriteStream(partial, { mode: 0o644 }), { signal });
      await rename(partial, target);
    } catch (error) {
      await unlink(partial).catch(() => undefined);
      throw error;
    }
  } finally {
    bar.stop();
  }
  if (options.json) printJson(io, { id, file: target, size, sha256: meta['sha256'] });
  else print(io, `Saved image ${id} to ${target} (${humanSize(size)}, sha256 verified)`);
}

function safeFileName(name: string, format: string | undefined): string {
  const base = name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'image';
  return format && !base.endsWith(`.${format}`) ? `${base}.${format}` : base;
}
