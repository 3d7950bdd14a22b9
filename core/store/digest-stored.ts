import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Checksums } from '../image/model.js';
import { ParallelDigestStream } from '../transfer/parallel-digest.js';
import type { Store } from './port.js';

/** md5, sha256 and sha512 of a stored object, read back from its store (hashed on worker threads). */
export async function digestStored(
  store: Store,
  uri: string,
  signal?: AbortSignal,
): Promise<{ size: number; checksums: Required<Checksums> }> {
  const { stream } = await store.get(uri, signal ? { signal } : {});
  const digest = new ParallelDigestStream();
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  await pipeline(stream, digest, sink, ...(signal ? [{ signal }] : []));
  return digest.result();
}
