import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { VisorError } from '../../core/errors.js';
import { OffThreadSha256 } from '../../core/transfer/off-thread-sha256.js';
import type { BlockSink } from '../client/block-get.js';

/**
 * What a download is written into, checked as it goes: one sha256 over the blocks as they
 * arrive (each byte read once, hashed in blocks of up to a MiB, on a worker thread so that the
 * hashing runs beside receiving and writing), and the byte count. `verify` fails (integrity) when
 * either differs from what the image's metadata announced. A block is done with when both its
 * write and its hashing are.
 */
abstract class VerifyingSink implements BlockSink {
  readonly #hash = new OffThreadSha256();
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
    return Promise.all([this.#hash.update(block), this.put(block, at)]).then(() => undefined);
  }

  protected abstract put(block: Buffer, position: number): Promise<void>;

  /** Checks what was received; the digest, when it matches. Ends the hashing worker. */
  protected async verify(): Promise<string> {
    try {
      const got = await this.#hash.digest();
      if (this.#bytes !== this.size) {
        throw new VisorError('integrity', `received ${this.#bytes} bytes, the image has ${this.size}`);
      }
      if (this.sha256 !== undefined && got !== this.sha256) {
        const why = `downloaded bytes do not match the image's sha256 (${got} != ${this.sha256})`;
        throw new VisorError('integrity', why);
      }
      return got;
    } finally {
      await this.#hash.close();
    }
  }

  /** Ends the hashing worker without a verdict (the download failed). */
  protected async abandon(): Promise<void> {
    await this.#hash.close();
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
      await this.verify();
      await this.#handle.close();
      await rename(this.#partial, this.#target);
    } catch (error) {
      await this.discard();
      throw error;
    }
  }

  async discard(): Promise<void> {
    await this.abandon();
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
    await this.verify();
  }

  async discard(): Promise<void> {
    await this.abandon();
  }
}
