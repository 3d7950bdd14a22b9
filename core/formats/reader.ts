import { open, type FileHandle } from 'node:fs/promises';
import { VisorError } from '../errors.js';

/**
 * Random access to an image's bytes. Inspection reads only the few ranges a format's headers
 * point at (never the whole file), so the same code serves a local file, a buffer and a member
 * of a tar archive.
 */
export interface ImageReader {
  /** Total size in bytes. */
  readonly size: number;
  /** Up to `length` bytes from `offset`; fewer only at the end of the image. */
  read(offset: number, length: number): Promise<Buffer>;
}

/** A reader over a file that the caller must close. */
export interface FileImageReader extends ImageReader {
  readonly path: string;
  /** The open handle: convertImage passes this very file to qemu-img, never the path again. */
  readonly handle: FileHandle;
  close(): Promise<void>;
}

export function bufferReader(data: Buffer): ImageReader {
  return {
    size: data.length,
    read: async (offset, length) =>
      data.subarray(Math.min(offset, data.length), Math.min(offset + length, data.length)),
  };
}

export async function openFileReader(path: string): Promise<FileImageReader> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new VisorError(
      code === 'ENOENT' ? 'notFound' : 'invalidInput',
      `cannot open image file ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new VisorError('invalidInput', `${path} is not a regular file`);
    return fileReader(path, handle, info.size);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

function fileReader(path: string, handle: FileHandle, size: number): FileImageReader {
  return {
    path,
    handle,
    size,
    async read(offset, length) {
      const wanted = Math.max(0, Math.min(length, size - offset));
      const buffer = Buffer.alloc(wanted);
      let done = 0;
      // A read may return fewer bytes than asked for; loop until the range or the file ends.
      while (done < wanted) {
        const { bytesRead } = await handle.read(buffer, done, wanted - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === wanted ? buffer : buffer.subarray(0, done);
    },
    close: () => handle.close(),
  };
}

/** A window of another reader: a tar member seen as an image of its own. */
export function sliceReader(base: ImageReader, start: number, size: number): ImageReader {
  return {
    size,
    read: (offset, length) => {
      const end = Math.min(offset + length, size);
      return end <= offset ? Promise.resolve(Buffer.alloc(0)) : base.read(start + offset, end - offset);
    },
  };
}

/** Counts what inspection actually read, to prove it reads headers and not whole images. */
export interface CountingReader extends ImageReader {
  readonly bytesRead: number;
  readonly reads: number;
}

export function countingReader(base: ImageReader): CountingReader {
  let bytesRead = 0;
  let reads = 0;
  return {
    size: base.size,
    get bytesRead() {
      return bytesRead;
    },
    get reads() {
      return reads;
    },
    async read(offset, length) {
      const data = await base.read(offset, length);
      bytesRead += data.length;
      reads += 1;
      return data;
    },
  };
}

/**
 * Exactly `length` bytes at `offset`, or an `invalidInput` error naming the structure that
 * lies beyond the end of the image (a truncated image).
 */
export async function readExact(reader: ImageReader, offset: number, length: number, what: string): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > reader.size) {
    throw new VisorError(
      'invalidInput',
      `truncated image: ${what} (${length} bytes at offset ${offset}) ` +
        `lies beyond the end of the image (${reader.size} bytes)`,
    );
  }
  const data = await reader.read(offset, length);
  if (data.length !== length)
    throw new VisorError(
      'invalidInput',
      `truncated image: could read only ${data.length} of ${length} bytes of ${what} at offset ${offset}`,
    );
  return data;
}

/** A u64 field as a number; Infinity past 2^53, which no sane image has and every bounds check then refuses. */
export function u64(buffer: Buffer, offset: number, endian: 'be' | 'le'): number {
  const value = endian === 'be' ? buffer.readBigUInt64BE(offset) : buffer.readBigUInt64LE(offset);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(value);
}

/**
 * Reads `base` in aligned blocks and keeps the last few: inspection's many small reads near
 * each other (a header, then the table it points at) become a few requests to a remote store.
 */
export function cachingReader(base: ImageReader, blockSize = 64 * 1024, maxBlocks = 32): ImageReader {
  const blocks = new Map<number, Promise<Buffer>>();
  const block = (index: number): Promise<Buffer> => {
    let data = blocks.get(index);
    if (data) {
      blocks.delete(index);
    } else {
      data = base.read(index * blockSize, blockSize);
      // A failed read is not kept: the next attempt reads again.
      data.catch(() => blocks.delete(index));
    }
    blocks.set(index, data);
    if (blocks.size > maxBlocks) blocks.delete(blocks.keys().next().value!);
    return data;
  };
  return {
    size: base.size,
    async read(offset, length) {
      const end = Math.min(base.size, offset + length);
      if (end <= offset) return Buffer.alloc(0);
      const parts: Buffer[] = [];
      for (let index = Math.floor(offset / blockSize); index * blockSize < end; index++) {
        const data = await block(index);
        const start = index * blockSize;
        parts.push(data.subarray(Math.max(0, offset - start), Math.min(data.length, end - start)));
        if (data.length < blockSize) break;
      }
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    },
  };
}
