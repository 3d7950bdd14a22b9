import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { FileBody } from '../client/file-body.js';
import { VisorError } from '../../core/errors.js';
import type { CliIo } from './io.js';
import { progressBar } from './progress.js';

/** An upload body read from the open file in large blocks (the client's cheap path). */
export type FileUpload = FileBody;

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
  const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new VisorError('invalidInput', `cannot read ${file}: ${error.message}`);
  });
  const bar = await progressBar(io, 'upload  ', info.size, showProgress).catch(async (error: unknown) => {
    await handle.close();
    throw error;
  });
  try {
    return await send({ file: handle, size: info.size, onProgress: (n: number) => bar.update(n) });
  } finally {
    bar.stop();
    await handle.close().catch(() => undefined);
  }
}
