import { createHash } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VisorError } from '../../core/errors.js';
import type { BlockSink } from '../client/block-get.js';

/**
 * What a download is written into, checked as it goes: one sha256 over the blocks as they
 * arrive, and the byte count. `verify` fails (integrity) when either differs from what the
 * image's metadata announced. Each block is hashed as it is handed over, on this thread, while
 * the socket's bytes are still in the CPU's cache; a worker thread would cost more CPU (its
 * start-up and two messages per block) for a hash that keeps up with any sender anyway.
 */
abstract class VerifyingSink implements BlockSink {
  readonly #hash = createHash('sha256');
  #bytes = 0;

  constructor(
    readonly size: number,
    /** The image's sha256 from the catalog; undefined when it has none (nothing to compare). */
    readonly sha256: string | undefined,
    private readonly onProgress: (bytes: number) => void,
  ) {}

  write(block: Buffer): Promise<void> {
    const at = this.#bytes;
    this.#bytes += block.length;
    this.onProgress(this.#bytes);
    this.#hash.update(block);
    return this.put(block, at);
  }

  protected abstract put(block: Buffer, position: number): Promise<void>;

  /** Checks what was received; the digest, when it matches. */
  protected verify(): string {
    const got = this.#hash.digest('hex');
    if (this.#bytes !== this.size) {
      throw new VisorError('integrity', `received ${this.#bytes} bytes, the image has ${this.size}`);
    }
    if (this.sha256 !== undefined && got !== this.sha256) {
      const why = `downloaded bytes do not match the image's sha256 (${got} != ${this.sha256})`;
      throw new VisorError('integrity', why);
    }
    return got;
  }
}

/**
 * A file written under a temporary name beside the target (positional writes, several in flight)
 * and renamed over the target only once every byte is in and verified: an interrupted or
 * corrupt download never looks complete, and leaves no temporary file behind.
 */
export class VerifiedFileSink extends VerifyingSink {
  readonly #handle: FileHandle;
  readonly #partial: string;
  readonly #target: string;

  private constructor(
    handle: FileHandle,
    partial: string,
    target: string,
    size: number,
    sha256: string | undefined,
    onProgress: (bytes: number) => void,
  ) {
    super(size, sha256, onProgress);
    this.#handle = handle;
    this.#partial = partial;
    this.#target = target;
  }

  static async create(
    target: string,
    size: number,
    sha256: string | undefined,
    onProgress: (bytes: number) => void,
  ): Promise<VerifiedFileSink> {
    const partial = join(dirname(target), `.${basename(target)}.part`);
    const handle = await open(partial, 'w', 0o644).catch((error: NodeJS.ErrnoException) => {
      const why = error.code === 'ENOENT' ? 'no such folder' : error.message;
      throw new VisorError('invalidInput', `cannot write ${partial}: ${why}`, { cause: error });
    });
    return new VerifiedFileSink(handle, partial, target, size, sha256, onProgress);
  }

  protected async put(block: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < block.length) {
      done += (await this.#handle.write(block, done, block.length - done, position + done)).bytesWritten;
    }
  }

  /** Verifies, then moves the file into place. On any failure the temporary file is removed. */
  async finish(): Promise<void> {
    try {
      this.verify();
      await this.#handle.close();
      await rename(this.#partial, this.#target);
    } catch (error) {
      await this.discard();
      throw error;
    }
  }

  async discard(): Promise<void> {
    await this.#handle.close().catch(() => undefined);
    await unlink(this.#partial).catch(() => undefined);
  }
}

/** Standard output: the bytes go out as they come; a mismatch is reported at the end (and the exit code says it). */
export class VerifiedStreamSink extends VerifyingSink {
  constructor(
    private readonly out: NodeJS.WritableStream,
    size: number,
    sha256: string | undefined,
    onProgress: (bytes: number) => void,
  ) {
    super(size, sha256, onProgress);
  }

  protected put(block: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.out.write(block, (error) => (error ? reject(error) : resolve()));
    });
  }

  async finish(): Promise<void> {
    this.verify();
  }

  async discard(): Promise<void> {
    // Nothing to remove: what went out is out (the exit code says the download failed).
  }
}
