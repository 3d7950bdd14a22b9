import { Transform, type TransformCallback } from 'node:stream';
import { isVisorError, type VisorError } from '../errors.js';
import { inspectImage, type InspectOptions } from './inspect.js';
import type { ImageReader } from './reader.js';
import type { InspectionReport } from './types.js';

/**
 * Inspects an image while it streams past, for uploads: the bytes go on untouched (a pass-through
 * Transform), and the few ranges inspection reads are kept as they fly by — the first 64 KiB
 * (every signature and most headers), the last 16 KiB (VHD footer, VMDK footer) and whatever
 * the headers point at further on (a VHD block table, VHDX metadata, OVA members). Which ranges
 * those are is learnt by running the inspector on what has arrived so far, with bytes that have
 * not arrived read as zeros; each range it asks for ahead of the stream is kept when the stream
 * gets there, and the run is repeated when one is complete.
 *
 * When the stream ends, the inspector runs for real on what was kept. A refusal fails the stream
 * from `_flush`, before the end reaches the writer: a store never commits a refused image. If the
 * real run needs bytes that were not kept (a range behind the stream when it was learnt, or
 * beyond the memory bounds), the verdict is `incomplete` and `inspect(fallback)` finishes the job
 * reading those few ranges from where the bytes were written.
 *
 * Memory is bounded per stream (64 KiB + 16 KiB + at most 1 MiB of ranges, all allocated only as
 * bytes arrive) and for the process (64 MiB of ranges across all streams). Per chunk the work is
 * a copy of the bytes that fall into a kept range: nothing on the hot path reads every byte.
 */
export const HEAD_BYTES = 64 * 1024;
export const TAIL_BYTES = 16 * 1024;
const maxRangeBytesPerStream = 1024 * 1024;
const maxRangeBytesPerProcess = 64 * 1024 * 1024;
/** Learning runs per stream: an OVA walk needs one per tar member it steps over. */
const maxLearningRuns = 32;
/** The size a learning run assumes when the stream's length is not known (its end is never reached). */
const unknownSize = 2 ** 40;

let rangeBytesInUse = 0;

export interface StreamInspectionOptions extends InspectOptions {
  /** The length announced (Content-Length): lets ranges near the end be kept as they pass. */
  size?: number;
}

export type StreamVerdict =
  | { state: 'accepted'; report: InspectionReport }
  | { state: 'refused'; error: VisorError }
  | { state: 'incomplete' };

interface KeptRange {
  start: number;
  end: number;
  data: Buffer | undefined;
  /** Bytes of the range that have arrived (from `start`). */
  filled: number;
}

/** Thrown by the final reader for bytes it does not hold (never a VisorError: inspect() lets it through). */
class NotKept extends Error {}

export class InspectingStream extends Transform {
  readonly #options: InspectOptions;
  readonly #announced: number | undefined;
  #head: Buffer | undefined;
  #tail: Buffer | undefined;
  #position = 0;
  readonly #ranges: KeptRange[] = [];
  #rangeBytes = 0;
  #runs = 0;
  #verdict: StreamVerdict | undefined;

  constructor(options: StreamInspectionOptions = {}) {
    super();
    this.#options = {
      ...(options.declared ? { declared: options.declared } : {}),
      ...(options.container ? { container: options.container } : {}),
    };
    this.#announced = options.size;
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#position;
  }

  /** The outcome once the stream has ended; undefined before. */
  settled(): StreamVerdict | undefined {
    return this.#verdict;
  }

  /** The outcome; only once the stream has ended. */
  verdict(): StreamVerdict {
    if (!this.#verdict) throw new Error('inspection verdict read before the stream ended');
    return this.#verdict;
  }

  /**
   * The report, reading what the stream did not keep from `fallback` (the stored object): only
   * needed when the verdict is `incomplete`. Throws the refusal as the inspector does.
   */
  async inspect(fallback: ImageReader): Promise<InspectionReport> {
    const verdict = this.verdict();
    if (verdict.state === 'accepted') return verdict.report;
    if (verdict.state === 'refused') throw verdict.error;
    return inspectImage(this.#reader(this.#position, fallback), this.#options);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#keepTail(chunk, this.#position + chunk.length);
    this.#step(chunk, 0, callback);
  }

  /**
   * Keeps what falls into kept ranges, piece by piece: a piece ends where the head or a range is
   * complete, which is when a learning run may name new ranges (possibly in this very chunk).
   */
  #step(chunk: Buffer, from: number, callback: TransformCallback): void {
    let offset = from;
    while (offset < chunk.length) {
      const start = this.#position;
      let stop = start + chunk.length - offset;
      if (start < HEAD_BYTES) stop = Math.min(stop, HEAD_BYTES);
      for (const range of this.#ranges)
        if (range.end > start && range.filled < range.end - range.start) stop = Math.min(stop, range.end);
      const piece = chunk.subarray(offset, offset + stop - start);
      let event = false;
      if (start < HEAD_BYTES) {
        this.#head ??= Buffer.allocUnsafe(HEAD_BYTES);
        piece.copy(this.#head, start);
        event = stop === HEAD_BYTES;
      }
      for (const range of this.#ranges) {
        if (range.end <= start || range.start >= stop || range.filled === range.end - range.start) continue;
        range.data ??= Buffer.allocUnsafe(range.end - range.start);
        const low = Math.max(range.start, start);
        piece.copy(range.data, low - range.start, low - start, stop - start);
        range.filled = stop - range.start;
        if (stop === range.end) event = true;
      }
      this.#position = stop;
      offset += stop - start;
      if (event && this.#runs < maxLearningRuns) {
        this.#learn().then(() => this.#step(chunk, offset, callback), callback);
        return;
      }
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.#conclude().then(
      (verdict) => {
        this.#verdict = verdict;
        this.#release();
        // A refusal fails the stream before its end reaches the writer: nothing is committed.
        callback(verdict.state === 'refused' ? verdict.error : null);
      },
      (error: unknown) => {
        this.#release();
        callback(error as Error);
      },
    );
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    this.#release();
    callback(error);
  }

  async #conclude(): Promise<StreamVerdict> {
    try {
      return { state: 'accepted', report: await inspectImage(this.#reader(this.#position), this.#options) };
    } catch (error) {
      if (error instanceof NotKept) return { state: 'incomplete' };
      if (isVisorError(error)) return { state: 'refused', error };
      throw error;
    }
  }

  /** One learning run: the inspector on what has arrived, noting the ranges ahead it reads. */
  async #learn(): Promise<void> {
    this.#runs++;
    const size = this.#announced ?? unknownSize;
    const reader: ImageReader = {
      size,
      read: async (offset, length) => {
        const end = Math.min(size, offset + length);
        if (end <= offset) return Buffer.alloc(0);
        const out = Buffer.alloc(end - offset);
        for (let at = 0; at < out.length; ) {
          const n = this.#copyFrom(out, at, offset + at, size);
          if (n === 0) {
            this.#want(offset + at, end);
            break;
          }
          at += n;
        }
        return out;
      },
    };
    await inspectImage(reader, this.#options).catch(() => undefined);
  }

  /** Keeps [start, end) when it is still ahead of the stream and within the memory bounds. */
  #want(start: number, end: number): void {
    if (start < this.#position) return;
    if (this.#ranges.some((r) => r.start <= start && r.end >= end)) return;
    const length = end - start;
    if (this.#rangeBytes + length > maxRangeBytesPerStream || rangeBytesInUse + length > maxRangeBytesPerProcess)
      return;
    this.#rangeBytes += length;
    rangeBytesInUse += length;
    this.#ranges.push({ start, end, data: undefined, filled: 0 });
  }

  /** Gives the stream's share of the process-wide bound back (the kept bytes go with the stream). */
  #release(): void {
    rangeBytesInUse -= this.#rangeBytes;
    this.#rangeBytes = 0;
  }

  /** Copies the last bytes of `chunk` (which ends at `end`) into the tail ring. */
  #keepTail(chunk: Buffer, end: number): void {
    this.#tail ??= Buffer.allocUnsafe(TAIL_BYTES);
    const n = Math.min(chunk.length, TAIL_BYTES);
    let from = end - n;
    let source = chunk.length - n;
    while (source < chunk.length) {
      const at = from % TAIL_BYTES;
      const count = Math.min(TAIL_BYTES - at, chunk.length - source);
      chunk.copy(this.#tail, at, source, source + count);
      source += count;
      from += count;
    }
  }

  /** Copies what one kept piece holds of byte `position` onwards into out[at..]; how many bytes. */
  #copyFrom(out: Buffer, at: number, position: number, size: number): number {
    const want = out.length - at;
    const seen = this.#position;
    if (this.#head && position < Math.min(HEAD_BYTES, seen)) {
      const n = Math.min(want, Math.min(HEAD_BYTES, seen) - position);
      return this.#head.copy(out, at, position, position + n);
    }
    // The tail ring holds the last TAIL_BYTES of what has arrived; only whole at the end.
    const tailStart = Math.max(0, seen - TAIL_BYTES);
    if (this.#tail && size === seen && position >= tailStart && position < seen) {
      const n = Math.min(want, seen - position);
      const ring = position % TAIL_BYTES;
      const first = Math.min(n, TAIL_BYTES - ring);
      this.#tail.copy(out, at, ring, ring + first);
      if (first < n) this.#tail.copy(out, at + first, 0, n - first);
      return n;
    }
    for (const range of this.#ranges) {
      if (!range.data || position < range.start || position >= range.start + range.filled) continue;
      const n = Math.min(want, range.start + range.filled - position);
      return range.data.copy(out, at, position - range.start, position - range.start + n);
    }
    return 0;
  }

  /** The reader of the final run: kept bytes, then `fallback` (or NotKept) for the rest. */
  #reader(size: number, fallback?: ImageReader): ImageReader {
    return {
      size,
      read: async (offset, length) => {
        const end = Math.min(size, offset + length);
        if (end <= offset) return Buffer.alloc(0);
        const out = Buffer.alloc(end - offset);
        for (let at = 0; at < out.length; ) {
          const n = this.#copyFrom(out, at, offset + at, size);
          if (n > 0) {
            at += n;
            continue;
          }
          if (!fallback) throw new NotKept();
          // The rest of the read from where the bytes were written (the same bytes as any kept).
          const rest = await fallback.read(offset + at, out.length - at);
          rest.copy(out, at);
          if (rest.length < out.length - at) return out.subarray(0, at + rest.length);
          break;
        }
        return out;
      },
    };
  }
}
