import { isVisorError, VisorError } from '../errors.js';
import type { Store } from '../store/port.js';
import { sourceError } from './port.js';
import type { SourceDownload } from './port.js';

/** Lists are small documents; anything bigger is not a list (and must not fill memory). */
export const maxListBytes = 32 * 1024 * 1024;

/** Fetches a list document whole; failures to reach it are `unreachable` (worth retrying). */
export async function fetchDocument(http: Store, url: string, signal?: AbortSignal): Promise<Buffer> {
  signal?.throwIfAborted();
  let got: Awaited<ReturnType<Store['get']>>;
  try {
    got = await http.get(url, signal ? { signal } : {});
  } catch (error) {
    if (isVisorError(error, 'forbidden')) throw error;
    throw sourceError('unreachable', `cannot fetch the list ${redact(url)}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (got.size > maxListBytes) {
    got.stream.destroy();
    throw sourceError('malformed', `${redact(url)} is ${got.size} bytes: too big for a list (at most ${maxListBytes})`);
  }
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of got.stream) chunks.push(chunk as Buffer);
  } catch (error) {
    throw sourceError('unreachable', `reading the list ${redact(url)} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return Buffer.concat(chunks);
}

/** Opens an image file over HTTP at `offset` (ranges are checked by the http store). */
export async function openUrl(http: Store, url: string, offset = 0, signal?: AbortSignal): Promise<SourceDownload> {
  signal?.throwIfAborted();
  try {
    if (offset > 0) {
      const got = await http.get(url, { range: { start: offset }, ...(signal ? { signal } : {}) });
      return { stream: got.stream, offset, size: got.size };
    }
    const got = await http.get(url, signal ? { signal } : {});
    return { stream: got.stream, offset: 0, size: got.size };
  } catch (error) {
    if (isVisorError(error) && ['notFound', 'forbidden', 'timeout', 'invalidInput'].includes(error.kind)) throw error;
    if (isVisorError(error, 'unavailable')) throw sourceError('unreachable', error.message, { cause: error });
    throw new VisorError('invalidResponse', `cannot download ${redact(url)}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** A URL without credentials or query (signed URLs carry secrets there). */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

/** An absolute http(s) URL, or undefined. */
export function httpUrl(value: string): URL | undefined {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}
