import { buffer } from 'node:stream/consumers';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { cachingReader, type ImageReader } from '../formats/reader.js';
import type { Store } from './port.js';

/**
 * Random access to a stored object, for inspection: ranged reads where the store serves ranges,
 * else the object read from the start up to what is asked (stores without ranges are small or
 * local). Reads go through a block cache, so the handful of header reads become a few requests.
 */
export function storeReader(store: Store, uri: string, size: number, signal?: AbortSignal): ImageReader {
  const options = signal ? { signal } : {};
  return cachingReader({
    size,
    read: async (offset, length) => {
      const end = Math.min(size, offset + length);
      if (end <= offset) return Buffer.alloc(0);
      if (store.capabilities.ranges)
        return buffer((await store.get(uri, { ...options, range: { start: offset, end: end - 1 } })).stream);
      const { stream } = await store.get(uri, options);
      return readWindow(stream, offset, end);
    },
  });
}

/** Bytes [start, end) of a stream that starts at 0; the stream is dropped once they are read. */
async function readWindow(
  stream: NodeJS.ReadableStream & { destroy(): void },
  start: number,
  end: number,
): Promise<Buffer> {
  const out = Buffer.alloc(end - start);
  let position = 0;
  let filled = 0;
  const done = new Error('window read');
  await pipeline(
    stream,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        const from = Math.max(0, start - position);
        const to = Math.min(chunk.length, end - position);
        if (to > from) filled += chunk.copy(out, position + from - start, from, to);
        position += chunk.length;
        callback(position >= end ? done : null);
      },
    }),
  ).catch((error: unknown) => {
    if (error !== done) throw error;
  });
  return filled === out.length ? out : out.subarray(0, filled);
}
