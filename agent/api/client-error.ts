import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const answers: Record<string, { status: number; reason: string; message: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, reason: 'Request Timeout', message: 'the request took too long to arrive' },
  HPE_HEADER_OVERFLOW: {
    status: 431,
    reason: 'Request Header Fields Too Large',
    message: 'the request headers are too large',
  },
};
const malformed = { status: 400, reason: 'Bad Request', message: 'malformed HTTP request' };

/**
 * What a connection gets when its bytes are not HTTP: a short error in VISOR's body, then the
 * connection closed. Bytes after a request's declared body (a Content-Length that lies) are
 * reported while that request is still being answered; writing the error at once, as Fastify's
 * default handler does, puts it in front of the answer in flight and closes the socket under it,
 * so the client never learns what became of its request. The answer in flight is finished first
 * (unless the bad bytes are in its own body).
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const { status, reason, message } = answers[error.code ?? ''] ?? malformed;
  const answer = () => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify({ code: status, message });
    // A TLS socket that never finished its handshake would hold the answer (and the socket)
    // forever: whatever happens, the connection is gone a moment later.
    const cut = setTimeout(() => socket.destroy(), 1000);
    cut.unref();
    socket.once('close', () => clearTimeout(cut));
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };
  // Node keeps the response being written on this socket here (undocumented, stable since 0.x).
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!inFlight || inFlight.writableFinished) {
    answer();
    return;
  }
  if (!inFlight.req.complete) {
    // The bad bytes are inside that request's own body: it cannot be answered any more.
    if (inFlight.headersSent) socket.destroy();
    else answer();
    return;
  }
  inFlight.once('finish', answer);
  inFlight.once('close', () => {
    if (!inFlight.writableFinished) socket.destroy();
  });
}
