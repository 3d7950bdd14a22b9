import { randomBytes } from 'node:crypto';
import {
  close as closeFdCallback,
  constants,
  createWriteStream,
  fstatSync,
  fsync as fsyncCallback,
  open as openCallback,
} from 'node:fs';
import { access, lstat, open, readdir, realpath, rename, unlink } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { addAbortSignal, type Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { isVisorError, VisorError } from '../../errors.js';
import { ensurePrivateDir } from '../../fs/private-paths.js';
import { checksumAlgorithms, type ChecksumAlgorithm, type Checksums } from '../../image/model.js';
import { writeInBlocks } from '../../transfer/block-file-writer.js';
import { verifyDigest } from '../../transfer/digest.js';
import { FileRangeStream } from '../../transfer/file-range-stream.js';
import { ParallelDigestStream } from '../../transfer/parallel-digest.js';
import type { ByteRange, GetResult, ObjectInfo, PutOptions, PutResult, Store } from '../port.js';
import { checkRange, objectKeyPattern } from '../keys.js';

export interface FileStoreOptions {
  /** Root folder of the store; created if missing. */
  root: string;
  /** fsync file and folder before a put returns (on by default: a put that returned survives a crash). */
  fsync?: boolean;
}

/**
 * Images as files under one root. A put writes to a hidden temp name, fsyncs and renames, so
 * a reader sees the whole object or nothing; URIs are file:// URLs that must resolve inside
 * the root, so neither ids nor crafted URIs can reach other files.
 */
export class FileStore implements Store {
  readonly kind = 'file';
  readonly capabilities = { writable: true, ranges: true };
  readonly #root: string;
  readonly #fsync: boolean;
  #ready: Promise<string> | undefined;

  constructor(options: FileStoreOptions) {
    this.#root = resolve(options.root);
    this.#fsync = options.fsync ?? true;
  }

  /** The root's real path (symlinks resolved), created on first use. */
  #rootDir(): Promise<string> {
    // 0700/0600: private images' bits are no more readable by other local users than their metadata.
    this.#ready ??= Promise.resolve()
      .then(() => ensurePrivateDir(this.#root))
      .then(() => realpath(this.#root));
    return this.#ready;
  }

  /** The store's folder, open for its fsyncs (see #syncRoot), and the fsyncs using it now. */
  #rootFd: { fd: Promise<number>; users: number; idle?: () => void } | undefined;

  async ping(): Promise<void> {
    const root = await this.#rootDir();
    try {
      await access(root, constants.W_OK | constants.X_OK);
    } catch (error) {
      throw new VisorError('unavailable', `file store: ${root} is not writable: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<PutResult> {
    if (!objectKeyPattern.test(key)) throw new VisorError('invalidInput', `invalid object key "${key}"`);
    const root = await this.#rootDir();
    // A fresh suffix: a re-upload never overwrites the object the catalog still points at.
    const name = `${key}.${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
    const finalPath = join(root, name);
    const tempPath = join(root, `.tmp-${name}`);
    const wanted = checksumAlgorithms.filter(
      (a) => (options.digests ?? checksumAlgorithms).includes(a) || options.expected?.[a] !== undefined,
    );
    let renamed = false;
    try {
      // Checked, then given its name (the file synced first, so the name never shows missing bytes).
      const publish = async (result: { size: number; checksums: Checksums }) => {
        verifyDigest(result, { size: options.size, checksums: options.expected });
        await rename(tempPath, finalPath);
        renamed = true;
      };
      const result = await this.#write(tempPath, body, wanted, options.signal, publish);
      if (this.#fsync) await this.#syncRoot(root);
      return { uri: pathToFileURL(finalPath).href, ...result };
    } catch (error) {
      await unlink(renamed ? finalPath : tempPath).catch(() => undefined);
      if (isVisorError(error)) throw error;
      if ((error as Error).name === 'AbortError')
        throw new VisorError('unavailable', 'upload aborted', { cause: error });
      throw new VisorError('unavailable', `file store: writing ${name} failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /**
   * Writes `body` to a new file at `path` (synced when the store syncs), computing `wanted` on the
   * way, then calls `publish` with the result (it checks and renames the file).
   */
  async #write(
    path: string,
    body: Readable,
    wanted: readonly ChecksumAlgorithm[],
    signal: AbortSignal | undefined,
    publish: (result: { size: number; checksums: Checksums }) => Promise<void>,
  ): Promise<{ size: number; checksums: Checksums }> {
    if (wanted.length > 1) {
      // Several digests cost more CPU per byte than the write itself: hashed on worker threads,
      // side by side, not one after the other on the event loop (BENCHMARKS.md has the figures).
      const digest = new ParallelDigestStream();
      const file = createWriteStream(path, { flags: 'wx', mode: 0o600 });
      await pipeline(body, digest, file, ...(signal ? [{ signal }] : []));
      if (this.#fsync) await fsyncPath(path);
      const result = digest.result();
      await publish(result);
      return result;
    }
    // One digest (an upload's sha256): written in large blocks from reused buffers and hashed
    // block by block on a hashing thread meanwhile (BENCHMARKS.md, Ingest).
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    let closing: Promise<void> | undefined;
    try {
      const result = await writeInBlocks(body, handle, {
        algorithms: wanted,
        ...(this.#fsync ? { syncEvery: EARLY_SYNC_BYTES } : {}),
        ...(signal ? { signal } : {}),
      });
      if (this.#fsync) await handle.sync();
      // Closed while it is renamed: one turn of the event loop fewer per upload, which a busy
      // server makes each request wait for (BENCHMARKS.md, the API under load).
      closing = handle.close();
      // Both settled before anything is cleaned up: the caller must know whether the rename happened.
      const [closed, published] = await Promise.allSettled([closing, publish(result)]);
      if (published.status === 'rejected') throw published.reason;
      if (closed.status === 'rejected') throw closed.reason;
      return result;
    } finally {
      await (closing ?? handle.close()).catch(() => undefined);
    }
  }

  async get(uri: string, options: { range?: ByteRange; signal?: AbortSignal } = {}): Promise<GetResult> {
    const path = await this.#pathOf(uri);
    // Opened first and checked through the descriptor: one round trip through the thread pool
    // fewer than lstat-then-open (each costs a turn of a busy event loop: BENCHMARKS.md, the API
    // under load), and no window between the check and the open. O_NOFOLLOW: a symlink planted in
    // the store does not lead the read outside it; O_NONBLOCK: a FIFO planted there does not hang
    // the open (it changes nothing for a regular file).
    const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
    const handle = await open(path, flags).catch((error: unknown) => {
      throw storeReadError(error, uri);
    });
    let size: number;
    let range: { start: number; end: number } | undefined;
    try {
      // fstat of an open descriptor reads the inode already in memory: never a wait on the disk.
      const info = fstatSync(handle.fd);
      if (!info.isFile()) throw new VisorError('notFound', `no object at ${uri}`);
      size = info.size;
      if (options.range) range = checkRange(options.range, size);
    } catch (error) {
      await handle.close();
      throw error;
    }
    const bytes = range ? { start: range.start, length: range.end - range.start + 1 } : { length: size };
    const stream = new FileRangeStream(handle, bytes);
    if (options.signal) addAbortSignal(options.signal, stream);
    const file = { fd: handle.fd, start: range?.start ?? 0, length: bytes.length };
    return {
      stream,
      size,
      ...(range ? { range } : {}),
      send: (destination, options) => stream.sendTo(destination, options),
      file,
    };
  }

  async head(uri: string): Promise<ObjectInfo> {
    const info = await this.#stat(await this.#pathOf(uri), uri);
    return { size: info.size, checksums: {}, lastModified: info.mtime.toISOString() };
  }

  async delete(uri: string): Promise<void> {
    const path = await this.#pathOf(uri);
    try {
      await unlink(path);
      if (this.#fsync) await this.#syncRoot(await this.#rootDir());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new VisorError('unavailable', `file store: deleting ${uri} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
  }

  async sweep(olderThanMs: number): Promise<number> {
    const root = await this.#rootDir();
    let removed = 0;
    for (const name of await readdir(root)) {
      if (!name.startsWith('.tmp-')) continue;
      const info = await lstat(join(root, name)).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > olderThanMs) {
        await unlink(join(root, name)).then(
          () => removed++,
          () => undefined,
        );
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    const held = this.#rootFd;
    this.#rootFd = undefined;
    if (!held) return;
    // Not under an fsync in flight: it would fail (EBADF), or sync whatever file got the number next.
    if (held.users > 0) {
      await new Promise<void>((resolve) => {
        held.idle = resolve;
      });
    }
    await held.fd.then((n) => closeFd(n)).catch(() => undefined);
  }

  /**
   * Makes a rename or unlink in the store's folder durable: fsync of the folder, through a
   * descriptor kept open for the store's life — one round trip through the thread pool where
   * open, fsync and close took three (each a turn of a busy event loop: BENCHMARKS.md, the API
   * under load). A plain descriptor, not a FileHandle: a store dropped without close() must not
   * have Node close it with a warning on garbage collection.
   */
  async #syncRoot(root: string): Promise<void> {
    this.#rootFd ??= { fd: openFd(root, 'r'), users: 0 };
    const held = this.#rootFd;
    held.users++;
    try {
      let fd: number;
      try {
        fd = await held.fd;
      } catch (error) {
        if (this.#rootFd === held) this.#rootFd = undefined;
        throw error;
      }
      await fsyncFd(fd);
    } finally {
      if (--held.users === 0) held.idle?.();
    }
  }

  async #stat(path: string, uri: string) {
    try {
      // lstat: a symlink planted in the store must not lead reads outside it.
      const info = await lstat(path);
      if (!info.isFile()) throw new VisorError('notFound', `no object at ${uri}`);
      return info;
    } catch (error) {
      if (isVisorError(error)) throw error;
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new VisorError('notFound', `no object at ${uri}`);
      throw new VisorError('unavailable', `file store: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Maps a URI to a path, refusing anything outside the root (.., symlinks, other schemes). */
  async #pathOf(uri: string): Promise<string> {
    let path: string;
    try {
      const url = new URL(uri);
      if (url.protocol !== 'file:') throw new Error('not a file: URI');
      path = fileURLToPath(url);
    } catch {
      throw new VisorError('invalidInput', `not a file store URI: ${uri}`);
    }
    const root = await this.#rootDir();
    const rel = relative(root, path);
    const name = rel.split(sep)[0] ?? '';
    if (rel === '' || isAbsolute(rel) || rel !== name || !objectNamePattern.test(name)) {
      throw new VisorError('invalidInput', `URI ${uri} is outside the file store at ${root}`);
    }
    return join(root, name);
  }
}

/**
 * An upload's pages are sent to disk every 64 MiB while it goes on (BENCHMARKS.md, Ingest): the
 * closing fsync then waits for the last few MiB, not the whole file. Smaller steps mean more
 * journal commits for nothing; larger ones, more left for the end.
 */
const EARLY_SYNC_BYTES = 64 * 1024 * 1024;
const objectNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const openFd = promisify(openCallback);
const fsyncFd = promisify(fsyncCallback);
const closeFd = promisify(closeFdCallback);

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A failed open for reading: no such object (missing, a symlink), or the store failing. */
function storeReadError(error: unknown, uri: string): VisorError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR')
    return new VisorError('notFound', `no object at ${uri}`, { cause: error });
  return new VisorError('unavailable', `file store: ${(error as Error).message}`, { cause: error });
}
