import { createHash } from 'node:crypto';
import { request as httpRequest, type Agent } from 'node:http';
import { connect } from 'node:net';
import {
  CONTENT_HASH_HEADER,
  signRequest,
  STREAMING_PAYLOAD,
  TRAILER_SIGNATURE_HEADER,
  trailerSignature,
  UNSIGNED_PAYLOAD,
} from '../../core/auth/signing.js';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json(): unknown;
  /** The client's port of the connection that carried the answer. */
  localPort?: number | undefined;
}

export interface Credentials {
  accessKey: string;
  secretKey: string;
}

export interface RawRequest {
  method: string;
  path: string;
  query?: [string, string][];
  headers?: Record<string, string>;
  body?: Buffer;
  /** Sign with these credentials (omit for an unsigned request). */
  as?: Credentials;
  /** Sign at this time instead of now. */
  signedAt?: Date;
  /** Change the request after signing (to prove the signature covers it). */
  tamper?: (r: { path: string; query: [string, string][]; headers: Record<string, string> }) => void;
  /** Send the body with UNSIGNED-PAYLOAD (refused since issue 15: to prove it). */
  unsignedPayload?: boolean;
  /** Send through this agent (a keep-alive one, to see whether the connection is kept). */
  agent?: Agent;
}

/** One HTTP request with full control over what is signed and what is sent. */
export function rawRequest(baseUrl: string, r: RawRequest): Promise<RawResponse> {
  const query = r.query ?? [];
  let headers: Record<string, string> = { ...r.headers };
  if (r.body) headers['content-length'] = String(r.body.length);
  if (r.as) {
    headers[CONTENT_HASH_HEADER] ??= r.unsignedPayload
      ? UNSIGNED_PAYLOAD
      : createHash('sha256')
          .update(r.body ?? Buffer.alloc(0))
          .digest('hex');
    headers = signRequest(
      r.as.accessKey,
      r.as.secretKey,
      { method: r.method, path: r.path, query, headers },
      r.signedAt,
    );
  }
  const sent = { path: r.path, query: [...query], headers };
  r.tamper?.(sent);
  const qs = sent.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  const url = new URL(`${sent.path}${qs ? `?${qs}` : ''}`, baseUrl);
  return new Promise((resolve, reject) => {
    const options = { method: r.method, headers: sent.headers, ...(r.agent ? { agent: r.agent } : {}) };
    const req = httpRequest(url, options, (res) => {
      const localPort = res.socket.localPort;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          json: () => JSON.parse(body.toString('utf8')) as unknown,
          localPort,
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(r.body);
  });
}

/**
 * Sends a signed streamed upload's headers (chunked, the digest to follow in a trailer) and only
 * `sendBytes` of the declared body, then drops the connection: a client cut off midway.
 */
export function cutOffUpload(
  baseUrl: string,
  r: {
    method: string;
    path: string;
    as: Credentials;
    declared: number;
    sendBytes: number;
    metaHeaders?: Record<string, string>;
  },
): Promise<void> {
  const headers = signRequest(r.as.accessKey, r.as.secretKey, {
    method: r.method,
    path: r.path,
    query: [],
    headers: {
      'content-type': 'application/octet-stream',
      'transfer-encoding': 'chunked',
      'x-visor-decoded-content-length': String(r.declared),
      [CONTENT_HASH_HEADER]: STREAMING_PAYLOAD,
      ...r.metaHeaders,
    },
  });
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      const head = [
        `${r.method} ${r.path} HTTP/1.1`,
        `host: ${url.host}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        '',
        '',
      ].join('\r\n');
      socket.write(head);
      const chunk = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      const pump = () => {
        while (sent < r.sendBytes) {
          const n = Math.min(chunk.length, r.sendBytes - sent);
          sent += n;
          const size = Buffer.from(`${n.toString(16)}\r\n`);
          const framed = Buffer.concat([size, chunk.subarray(0, n), Buffer.from('\r\n')]);
          if (!socket.write(framed)) {
            socket.once('drain', pump);
            return;
          }
        }
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      };
      pump();
    });
    socket.on('error', reject);
  });
}

/**
 * A signed upload sent with Transfer-Encoding: chunked (no Content-Length), in pieces of
 * `chunkSize`, streamed as the client does (STREAMING-SHA256-TRAILER: the body's sha256 and its
 * signature in the trailers): the server cannot know the length before the end.
 */
export interface ChunkedUpload {
  method: string;
  path: string;
  as: Credentials;
  body: Buffer;
  headers?: Record<string, string>;
  chunkSize?: number;
}

export function chunkedUpload(baseUrl: string, r: ChunkedUpload): Promise<RawResponse> {
  const headers = signRequest(r.as.accessKey, r.as.secretKey, {
    method: r.method,
    path: r.path,
    query: [],
    headers: {
      'content-type': 'application/octet-stream',
      'transfer-encoding': 'chunked',
      trailer: `${CONTENT_HASH_HEADER}, ${TRAILER_SIGNATURE_HEADER}`,
      [CONTENT_HASH_HEADER]: STREAMING_PAYLOAD,
      ...r.headers,
    },
  });
  const requestSignature = /Signature=([0-9a-f]{64})$/.exec(headers['authorization'] ?? '')?.[1] ?? '';
  const sha256 = createHash('sha256').update(r.body).digest('hex');
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(new URL(r.path, baseUrl), { method: r.method, headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const json = () => JSON.parse(body.toString('utf8')) as unknown;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
      res.on('error', reject);
    });
    // The server may answer (and close) before the whole body is sent: that answer is the result.
    req.on('error', (error) => (answered ? undefined : reject(error)));
    const size = r.chunkSize ?? 64 * 1024;
    let at = 0;
    const pump = () => {
      while (at < r.body.length) {
        const piece = r.body.subarray(at, at + size);
        at += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.addTrailers({
        [CONTENT_HASH_HEADER]: sha256,
        [TRAILER_SIGNATURE_HEADER]: trailerSignature(r.as.secretKey, requestSignature, sha256),
      });
      req.end();
    };
    pump();
  });
}
