import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { VisorError } from '../../core/errors.js';
import type { CliIo } from './io.js';
import { progressBar } from './progress.js';

export interface FileUpload {
  stream: Readable;
  size: number;
  onProgress: (bytes: number) => void;
}

/** Runs `send` with `file` opened as an upload body, a progress bar on stderr while it goes. */
export async function withUploadFile<T>(
  file: string,
  io: CliIo,
  showProgress: boolean,
  send: (upload: FileUpload) => Promise<T>,
): Promise<T> {
  const path = resolve(io.cwd, file);
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    throw new VisorError(
      'invalidInput',
      `cannot read ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`,
    );
  });
  if (!info.isFile()) throw new VisorError('invalidInput', `${file} is not a file`);
  const bar = await progressBar(io, 'upload  ', info.size, showProgress);
  try {
    return await send({ stream: createReadStream(path), size: info.size, onProgress: (n: number) => bar.update(n) });
  } finally {
    bar.stop();
  }
}
