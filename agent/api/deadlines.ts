import type { IncomingMessage, ServerResponse } from 'node:http';
import { VisorError } from '../../core/errors.js';

/**
 * Answers at once (when nothing was sent yet) and closes the connection: what the client still
 * sends is of no use. The request is destroyed too, so that whoever reads its body (a store
 * writing an upload) stops with an error and cleans up, instead of waiting for bytes that will
 * never come.
 */
export function answerAndClose(
  request: IncomingMessage,
  response: ServerResponse,
  status: number,
  message: string,
): void {
  const socket = response.socket;
  let done = false;
  const close = () => {
    if (done) return;
    done = true;
    request.destroy(new VisorError(status === 408 ? 'timeout' : 'unavailable', message));
    socket?.destroy();
  };
  if (response.headersSent || response.writableEnded) {
    close();
    return;
  }
  response.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
  response.end(JSON.stringify({ code: status, message }), close);
  // A client that does not read its answer does not get to keep the socket either.
  setTimeout(close, 1000).unref();
}

/**
 * A metadata body must arrive whole within `ms` of the request head: a signed JSON body sent a
 * byte at a time would otherwise hold a connection (and a parser buffer) for as long as the
 * client likes. 408, and the connection closed.
 */
export function bodyDeadline(request: IncomingMessage, response: ServerResponse, ms: number): void {
  if (request.complete) return;
  const timer = setTimeout(() => {
    if (!request.complete)
      answerAndClose(request, response, 408, `the request body did not arrive within ${ms / 1000} s`);
  }, ms);
  timer.unref();
  const clear = () => clearTimeout(timer);
  request.once('end', clear);
  request.once('close', clear);
}

export interface UploadRate {
  /** 0 turns the check off. */
  minBytesPerSecond: number;
  windowMs: number;
}

/**
 * Drops an upload whose client sends slower than `minBytesPerSecond` on average over each
 * window: a trickle of a byte now and then never trips an idle timeout, yet holds a
 * connection, a store upload and a catalog record for ever. Only time spent waiting for the
 * client counts: while visor holds the body back (its store is the slower side) the window
 * starts again. Returns a function that stops watching.
 */
export function watchUploadRate(request: IncomingMessage, response: ServerResponse, rate: UploadRate): () => void {
  if (rate.minBytesPerSecond <= 0) return () => undefined;
  const socket = request.socket;
  const tickMs = Math.max(50, Math.min(1000, Math.floor(rate.windowMs / 10)));
  let last = socket.bytesRead;
  let bytes = 0;
  let elapsed = 0;
  const timer = setInterval(() => {
    const now = socket.bytesRead;
    const delta = now - last;
    last = now;
    if (request.isPaused() || request.readableLength > 0) {
      bytes = 0;
      elapsed = 0;
      return;
    }
    bytes += delta;
    elapsed += tickMs;
    if (elapsed < rate.windowMs) return;
    if (bytes * 1000 < rate.minBytesPerSecond * elapsed) {
      stop();
      const got = Math.round((bytes * 1000) / elapsed);
      answerAndClose(
        request,
        response,
        408,
        `the upload is too slow (${got} bytes/s over ${elapsed / 1000} s; at least ${rate.minBytesPerSecond} needed)`,
      );
      return;
    }
    bytes = 0;
    elapsed = 0;
  }, tickMs);
  timer.unref();
  const stop = () => clearInterval(timer);
  request.once('end', stop);
  request.once('close', stop);
  return stop;
}
