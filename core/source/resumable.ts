import { Readable } from 'node:stream';
import { isVisorError, VisorError } from '../errors.js';
import type { Source, SourceEntry } from './port.js';

export interface ResumeOptions {
  /** Reconnections after a cut-off download, each resuming where the last one stopped. */
  retries?: number;
  signal?: AbortSignal;
  /** Told of each resumption (for logs and run history). */
  onResume?: (offset: number, error: unknown) => void;
}

/**
 * The bytes of an entry as one stream that survives dropped connections: a download cut off is
 * reopened at the byte it reached (or, when the source cannot resume, restarted and the bytes
 * already passed skipped), so that the caller reads each byte once.
 */
export function resumableDownload(source: Source, entry: SourceEntry, options: ResumeOptions = {}): Readable {
  const retries = options.retries ?? 3;
  async function* bytes(): AsyncGenerator<Buffer> {
    let delivered = 0;
    for (let attempt = 0; ; attempt++) {
      options.signal?.throwIfAborted();
      let skip = 0;
      try {
        const download = await source.open(entry, { offset: delivered, ...(options.signal ? { signal: options.signal } : {}) });
        skip = delivered - download.offset;
        if (skip < 0) throw new VisorError('invalidResponse', `the source resumed at ${download.offset}, past ${delivered}`);
        for await (const chunk of download.stream) {
          let data = chunk as Buffer;
          if (skip > 0) {
            const dropped = Math.min(skip, data.length);
            skip -= dropped;
            data = data.subarray(dropped);
            if (data.length === 0) continue;
          }
          delivered += data.length;
          yield data;
        }
        return;
      } catch (error) {
        if (options.signal?.aborted || attempt >= retries || !cutOff(error)) throw error;
        options.onResume?.(delivered, error);
      }
    }
  }
  return Readable.from(bytes(), { objectMode: false });
}

/** A dropped connection or a retryable refusal: worth reconnecting. */
function cutOff(error: unknown): boolean {
  if (isVisorError(error)) {
    // A body shorter than its Content-Length is a connection that dropped, not a lie.
    return error.kind === 'unavailable' || error.kind === 'timeout' || /ended after \d+ of/.test(error.message);
  }
  const code = (error as { code?: string }).code;
  return (
    code === 'ECONNRESET' ||
    code === 'EPIPE' ||
    code === 'ETIMEDOUT' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    /aborted|socket hang up|premature|ended/i.test((error as Error).message ?? '')
  );
}
