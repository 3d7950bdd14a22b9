import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { toVisorError } from '../core/errors.js';
import type { Logger } from '../core/logging/logger.js';
import { errorBody, httpStatus } from './api/errors.js';
import type { ContentPublisher } from './content-publisher.js';

/** Where the one-time content URLs live; the rest of the path is the secret token. */
export const contentPathPrefix = '/agent/content/';
const contentPath = /^\/agent\/content\/([A-Za-z0-9_-]+)$/;

/**
 * The one handler of `/agent/content/<token>`, on plain node:http: one-shot commands serve it
 * from a bare server without loading Fastify (agent/content-server.ts), and the agent's API
 * server mounts this same function as a route. GET sends the bytes, HEAD only their length;
 * an unknown, expired or revoked token is a 404.
 */
export function handleContent(
  publisher: ContentPublisher,
  request: IncomingMessage,
  response: ServerResponse,
  logger?: Logger,
): void {
  const match = contentPath.exec((request.url ?? '').split('?')[0] ?? '');
  const method = request.method;
  const source = match && (method === 'GET' || method === 'HEAD') ? publisher.take(match[1]!, response) : undefined;
  if (!source) {
    send(response, 404, 'no such content (the upload it was made for has ended)');
    return;
  }
  const headers = { 'content-type': 'application/octet-stream', 'content-length': String(source.size) };
  if (method === 'HEAD') {
    response.writeHead(200, headers).end();
    return;
  }
  source.open().then(
    (stream) => {
      response.writeHead(200, headers);
      // The cloud hanging up mid-copy is its business; the stream is closed either way.
      pipeline(stream, response).catch(() => response.destroy());
    },
    (error: unknown) => {
      const visor = toVisorError(error);
      logger?.error('cannot open the content a cloud asked for', { error: visor });
      send(response, httpStatus(visor), 'the image content cannot be read; the details are in the log');
    },
  );
}

function send(response: ServerResponse, status: number, message: string): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(errorBody(status, message)));
}
