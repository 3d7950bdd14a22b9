import { connect, type Socket } from 'node:net';
import { VisorError } from '../../core/errors.js';

/** The status and headers of an answer (names in lower case; repeated headers joined by ", "). */
export interface ResponseHead {
  status: number;
  headers: Record<string, string>;
}

/** Where the body goes. A block is lent: its memory is reused once the returned promise settles. */
export interface BlockSink {
  write(block: Buffer): Promise<void>;
}

export interface BlockGetOptions {
  /** Buffers the socket reads into; up to this many blocks are with the sink at once. */
  buffers?: number;
  bufferSize?: number;
  /** Error bodies (JSON messages) longer than this are cut. */
  maxErrorBody?: number;
  signal?: AbortSignal;
}

/** Thrown when the answer is not a plain Content-Length body: the caller asks again by other means. */
export class NotPlainBody extends Error {
  constructor(readonly head: ResponseHead) {
    super('the answer is not a plain Content-Length body');
  }
}

const MAX_HEAD = 64 * 1024;

/**
 * One HTTP/1.1 GET over a plain TCP socket that the kernel reads into a few large reused
 * buffers (net's `onread`), each handed to the sink as it is filled: no allocation and no
 * stream machinery per chunk. Node's HTTP client reads into a fresh 64 KiB buffer per chunk
 * and costs about 0.8 CPU-s per GiB more than this (BENCHMARKS.md, `visor get`).
 *
 * Deliberately small: `Connection: close`, one request per socket, and only the framing visor's
 * API answers downloads with — a Content-Length body. A 2xx answer framed otherwise (chunked, or
 * up to the close) rejects with NotPlainBody before any byte goes to the sink. `open` sees the
 * status and headers first and returns the sink (or throws, which aborts the download). Other
 * answers (errors) are read whole, up to `maxErrorBody`, and given back with an empty sink call.
 */
export function blockGet(
  url: URL,
  headers: Record<string, string>,
  open: (head: ResponseHead) => Promise<BlockSink | undefined>,
  options: BlockGetOptions = {},
): Promise<{ head: ResponseHead; errorBody?: Buffer }> {
  if (url.protocol !== 'http:') throw new VisorError('internal', 'blockGet speaks plain HTTP only');
  const count = Math.max(2, options.buffers ?? 4);
  const size = options.bufferSize ?? 1024 * 1024;
  const maxErrorBody = options.maxErrorBody ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const pool: Buffer[] = Array.from({ length: count }, () => Buffer.allocUnsafeSlow(size));
    const owned = new Set<Buffer>(pool);
    /** Buffers lent to the sink, oldest first, each with the promise of its return. */
    const lent: { buffer: Buffer; back: Promise<void> }[] = [];
    let current = pool.pop()!;
    let head: ResponseHead | undefined;
    let headBytes: Buffer[] = [];
    let headLength = 0;
    let sink: BlockSink | undefined;
    let opening = false;
    let remaining = 0;
    let errorBody: Buffer[] | undefined;
    let errorLength = 0;
    let done = false;
    let waitingFor: Buffer | undefined;

    const finish = (error?: unknown) => {
      if (done) return;
      done = true;
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      // The sink's writes in flight are awaited: when this settles, no write is outstanding.
      void Promise.allSettled(lent.map((l) => l.back)).then(() => {
        if (error) reject(error);
        else resolve({ head: head!, ...(errorBody ? { errorBody: Buffer.concat(errorBody) } : {}) });
      });
    };
    const onAbort = () => finish(new VisorError('unavailable', 'download aborted'));

    /** Lends `view` (part of `buffer`) to the sink; decides the buffer the next read goes into. */
    const lend = (buffer: Buffer, view: Buffer): boolean => {
      let written: Promise<void>;
      try {
        written = sink!.write(view);
      } catch (error) {
        written = Promise.reject(error);
      }
      const back = written.then(
        () => {
          lent.splice(
            lent.findIndex((l) => l.buffer === buffer),
            1,
          );
          if (owned.has(buffer) && buffer !== current) pool.push(buffer);
          if (waitingFor === buffer && !done) {
            waitingFor = undefined;
            socket.resume();
          }
        },
        (error: unknown) => finish(error),
      );
      lent.push({ buffer, back });
      const free = pool.pop();
      if (free) {
        current = free;
        return true;
      }
      // Every buffer is with the sink: reading pauses, and resumes into the first one returned.
      current = lent.find((l) => owned.has(l.buffer))!.buffer;
      waitingFor = current;
      return false;
    };

    const onBody = (buffer: Buffer, view: Buffer): boolean => {
      if (errorBody) {
        const part = view.subarray(0, Math.min(remaining, view.length));
        if (errorLength < maxErrorBody) errorBody.push(Buffer.from(part.subarray(0, maxErrorBody - errorLength)));
        errorLength += part.length;
        remaining -= part.length;
        if (remaining <= 0) finish();
        return true;
      }
      if (view.length > remaining) {
        finish(new VisorError('invalidResponse', `the server sent more than the ${remaining} bytes it announced`));
        return false;
      }
      remaining -= view.length;
      const more = view.length > 0 ? lend(buffer, view) : true;
      if (remaining === 0) finish();
      return more;
    };

    const onHead = (parsed: ResponseHead, rest: Buffer, buffer: Buffer): boolean => {
      head = parsed;
      const length = parsed.headers['content-length'];
      const chunked = parsed.headers['transfer-encoding'] !== undefined;
      const plain = length !== undefined && /^\d{1,15}$/.test(length) && !chunked;
      if (parsed.status < 200 || parsed.status >= 300) {
        errorBody = [];
        remaining = plain ? Number(length) : Number.MAX_SAFE_INTEGER;
        if (remaining === 0) finish();
        else if (rest.length > 0) onBody(buffer, rest);
        return !done;
      }
      if (!plain) {
        finish(new NotPlainBody(parsed));
        return false;
      }
      remaining = Number(length);
      // The sink is opened (a file, say) before any body byte is lent; reading waits meanwhile.
      opening = true;
      const pending = Buffer.from(rest);
      open(parsed).then(
        (opened) => {
          opening = false;
          if (done) return;
          if (!opened) return finish(new VisorError('internal', 'no sink for the download'));
          sink = opened;
          if (remaining === 0) return finish();
          if (pending.length > 0 && !onBody(pending, pending)) return;
          if (!done && !waitingFor) socket.resume();
        },
        (error: unknown) => finish(error),
      );
      return false;
    };

    const onRead = (nread: number, buffer: Uint8Array): boolean => {
      if (done) return false;
      const view = Buffer.from(buffer.buffer, buffer.byteOffset, nread);
      if (head) return onBody(buffer as Buffer, view);
      headBytes.push(Buffer.from(view));
      headLength += nread;
      const all = headBytes.length === 1 ? headBytes[0]! : Buffer.concat(headBytes);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        headBytes = [all];
        if (headLength > MAX_HEAD) {
          finish(new VisorError('invalidResponse', 'the server sent an answer head of more than 64 KiB'));
        }
        return !done;
      }
      let parsed: ResponseHead;
      try {
        parsed = parseHead(all.subarray(0, end).toString('latin1'));
      } catch (error) {
        finish(error);
        return false;
      }
      headBytes = [];
      return onHead(parsed, all.subarray(end + 4), buffer as Buffer);
    };

    const socket: Socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      // A generator: after every read the socket reads next into the buffer it returns.
      onread: { buffer: () => current, callback: onRead },
    });
    socket.setNoDelay(true);
    socket.on('error', (error) => finish(error));
    socket.on('close', () => {
      if (done) return;
      if (opening) return; // the open's outcome decides
      if (!head) finish(new VisorError('unavailable', 'the server closed the connection before it answered'));
      else if (errorBody) finish();
      else finish(new VisorError('unavailable', `the download was cut off ${remaining} bytes before its end`));
    });
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`, 'connection: close'];
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
    // Not end(): a server that sees the request's side closed may abort the answer.
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

/** Status line and header fields of an HTTP/1.x answer head (without the blank line). */
export function parseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  const quote = (line: string) => JSON.stringify(line.slice(0, 80));
  if (!status) throw new VisorError('invalidResponse', `not an HTTP/1.1 answer: ${quote(lines[0] ?? '')}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) {
      throw new VisorError('invalidResponse', `malformed header line in the answer: ${quote(line)}`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers[name];
    if (before !== undefined && name === 'content-length' && before !== value) {
      throw new VisorError('invalidResponse', 'the answer has two different Content-Lengths');
    }
    headers[name] = before === undefined || name === 'content-length' ? value : `${before}, ${value}`;
  }
  return { status: Number(status[1]), headers };
}
