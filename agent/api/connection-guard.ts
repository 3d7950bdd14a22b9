import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionLimits {
  /** Open connections at once. */
  maxConnections: number;
  /** Open connections at once from one address; 0: no per-address cap. */
  maxConnectionsPerAddress: number;
  /** A connection that has not sent a complete request head within this is closed. */
  headerTimeoutMs: number;
}

const busyBody = '{"code":503,"message":"too many connections; try again later"}';
const busy = [
  'HTTP/1.1 503 Service Unavailable',
  'connection: close',
  'content-type: application/json',
  `content-length: ${busyBody.length}`,
  '',
  busyBody,
].join('\r\n');

/**
 * Caps what clients can hold open. Node's own headersTimeout only starts once the first byte
 * of a request arrives, so a connection that sends nothing at all would stay open for ever;
 * here every connection must deliver a complete request head within `headerTimeoutMs` of
 * being accepted (of its TLS handshake, with TLS). Connections over the total or the
 * per-address cap are refused at once: a 503 on plain HTTP, a close with TLS.
 */
export function guardConnections(server: Server, limits: ConnectionLimits, tls: boolean): void {
  let open = 0;
  const perAddress = new Map<string, number>();
  const waiting = new WeakMap<Socket, NodeJS.Timeout>();

  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const mine = (perAddress.get(address) ?? 0) + 1;
    if (
      open + 1 > limits.maxConnections ||
      (limits.maxConnectionsPerAddress > 0 && mine > limits.maxConnectionsPerAddress)
    ) {
      refuse(socket, tls);
      return;
    }
    open++;
    perAddress.set(address, mine);
    socket.once('close', () => {
      open--;
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
    if (!tls) expectRequest(socket);
  });
  // With TLS, requests come on the TLS socket (a different object), once the handshake is done.
  if (tls) server.on('secureConnection', (socket: Socket) => expectRequest(socket));
  server.on('request', (request: { socket: Socket }) => {
    const timer = waiting.get(request.socket);
    if (timer) clearTimeout(timer);
    waiting.delete(request.socket);
  });

  function expectRequest(socket: Socket): void {
    const timer = setTimeout(() => socket.destroy(), limits.headerTimeoutMs);
    timer.unref();
    waiting.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  }
}

function refuse(socket: Socket, tls: boolean): void {
  if (tls) {
    socket.destroy();
    return;
  }
  // Whatever the client sends meanwhile is not read: the answer goes out and the socket closes.
  socket.pause();
  socket.end(busy);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/**
 * The default connection cap: what the process's open-file limit leaves after room for the
 * catalog, store files and clients of its own (Linux; 1,000 where the limit cannot be read).
 */
export function defaultMaxConnections(): number {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const soft = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1]);
    if (Number.isSafeInteger(soft) && soft > 0) return Math.max(32, Math.min(10_000, soft - 256));
  } catch {
    // not Linux
  }
  return 1000;
}
