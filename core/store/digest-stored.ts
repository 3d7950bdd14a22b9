import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Checksums } from '../image/model.js';
import { digestFileBytes } from '../transfer/file-digest.js';
import { ParallelDigestStream } from '../transfer/parallel-digest.js';
import type { Store } from './port.js';

/**
 * md5, sha256 and sha512 of a stored object, read back from its store and hashed on worker
 * threads. A local file is read by those threads themselves (large blocks into reused buffers,
 * nothing copied between threads, no work on this one); other stores' bytes stream through here.
 */
export async function digestStored(
  store: Store,
  uri: string,
  signal?: AbortSignal,
): Promise<{ size: number; checksums: Required<Checksums> }> {
  signal?.throwIfAborted();
  // No signal to the store: an abort must not close a file the hashing threads still read.
  const got = await store.get(uri);
  if (got.file) {
    try {
      return await digestFileBytes(got.file, signal);
    } finally {
      got.stream.destroy();
    }
  }
  const digest = new ParallelDigestStream();
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  await pipeline(got.stream, digest, sink, ...(signal ? [{ signal }] : []));
  return digest.result();
}
