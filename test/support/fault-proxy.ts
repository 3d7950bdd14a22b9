import { once } from 'node:events';
import {
  Agent,
  createServer,
  request as httpRequest,
  STATUS_CODES,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { prng, type Prng } from './prng.js';

/**
 * An HTTP proxy between the agent and a real OpenStack (Keystone + Glance) that injects faults.
 *
 * It fronts both services, one listener each: the agent's `authUrl` points at the Keystone
 * listener, and every token Keystone issues through it has the catalog's `image` endpoints
 * rewritten to the Glance listener. So the agent finds the proxy exactly as it would find a real
 * Glance (through the catalog), with no change to the driver or its config beyond `authUrl`;
 * and Keystone itself can be faulted too (the token request is part of a sync).
 *
 * Faults, per request, at a set rate, chosen by a seeded PRNG in arrival order (the same seed
 * and the same order of requests give the same faults):
 * - `status`: 500/502/503/504, either before the request reaches the peer, or after the peer did
 *   the work (the answer is lost and replaced: "did my POST happen?");
 * - `reset`: the connection is cut mid-request (after some body bytes went up: a truncated
 *   upload the peer sees fail) or mid-response (the peer did the work; the client gets part of
 *   the answer, or nothing, then a reset);
 * - `hang`: no answer at all, before or after the peer did the work, until the client gives up
 *   (a hung socket is dropped by the proxy after `hangLimitMs` at the latest);
 * - `slow`: latency, then bytes throttled both ways.
 * Scripted one-off faults (`script`) and a `tap` (hooks the crash suite uses to kill the agent at
 * a chosen moment) take precedence over the random ones. Every request is logged with what was
 * done to it.
 */

export type Service = 'keystone' | 'glance';
export const faultKinds = ['status', 'reset', 'hang', 'slow'] as const;
export type FaultKind = (typeof faultKinds)[number];

export type Fault =
  | { kind: 'status'; status: number; stage: 'before' | 'after' }
  | { kind: 'reset'; stage: 'request' | 'response'; afterBytes: number }
  | { kind: 'hang'; stage: 'before' | 'after' }
  | { kind: 'slow'; bytesPerSecond: number; latencyMs: number };

/** What a request does, from its method and path (Glance v2 and Keystone v3 routes). */
export type Operation =
  | 'auth'
  | 'list'
  | 'create'
  | 'read'
  | 'upload'
  | 'stage'
  | 'import'
  | 'patch'
  | 'delete'
  | 'action'
  | 'download'
  | 'other';

export interface RequestInfo {
  seq: number;
  service: Service;
  method: string;
  path: string;
  op: Operation;
  /** The text of a small request body (JSON, JSON patches), read before anything is decided. */
  body?: string;
}

export interface LogEntry extends Omit<RequestInfo, 'body'> {
  fault?: Fault;
  source?: 'scripted' | 'tap' | 'random';
  /** The peer's status, when the request reached it and it answered. */
  upstreamStatus?: number;
  /** Request body bytes passed on to the peer. */
  bytesUp: number;
  outcome?: 'answered' | 'injected' | 'reset' | 'hung' | 'client-gone' | 'upstream-error';
  at: number;
}

/** Hooks for tests that act at precise moments of the traffic (the crash suite). */
export interface Tap {
  /** A request arrived (its small body read); may return a fault for it. */
  onRequest?(info: RequestInfo): Fault | undefined;
  /** Request body bytes forwarded to the peer so far. */
  onUploadProgress?(info: RequestInfo, bytes: number): void;
  /** The peer answered; the answer is not yet passed on. */
  onUpstreamResponse?(info: RequestInfo, status: number): void;
}

export interface FaultProxyOptions {
  /** Keystone's origin, e.g. http://127.0.0.1:25000 (paths are kept as they are). */
  keystone: string;
  /** Glance's origin, e.g. http://127.0.0.1:25001. */
  glance: string;
  seed: number;
  /** Share of requests that get a random fault (0..1). */
  rate?: number;
  /** Services whose requests may get random faults (default both). */
  services?: readonly Service[];
  /** Relative weights of the random fault kinds (default equal). */
  weights?: Partial<Record<FaultKind, number>>;
  /** Throughput of a `slow` request, both ways (default 2 MiB/s). */
  slowBytesPerSecond?: number;
  /** A hung request's socket is dropped after this long, should the client never give up (default 60 s). */
  hangLimitMs?: number;
}

interface Scripted {
  match: (info: RequestInfo) => boolean;
  fault: Fault;
  left: number;
}

const smallBody = 64 * 1024;
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'host',
]);

export class FaultProxy {
  /** Keystone through the proxy; give `${authUrl}` to the agent. */
  readonly keystoneUrl: string;
  readonly glanceUrl: string;
  readonly log: LogEntry[] = [];
  rate: number;
  tap: Tap | undefined;
  readonly #options: FaultProxyOptions;
  readonly #servers: Server[];
  readonly #agent = new Agent({ keepAlive: true });
  readonly #rng: Prng;
  readonly #scripted: Scripted[] = [];
  readonly #hung = new Set<ServerResponse>();
  #seq = 0;

  private constructor(options: FaultProxyOptions, servers: Server[], urls: [string, string]) {
    this.#options = options;
    this.#servers = servers;
    this.#rng = prng(options.seed);
    this.rate = options.rate ?? 0;
    [this.keystoneUrl, this.glanceUrl] = urls;
  }

  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const servers = [createServer(), createServer()];
    const urls: string[] = [];
    for (const server of servers) {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }
    const proxy = new FaultProxy(options, servers, [urls[0]!, urls[1]!]);
    servers[0]!.on('request', (req: IncomingMessage, res: ServerResponse) => void proxy.#handle('keystone', req, res));
    servers[1]!.on('request', (req: IncomingMessage, res: ServerResponse) => void proxy.#handle('glance', req, res));
    return proxy;
  }

  /** Keystone v3 through the proxy: the agent's `authUrl`. */
  get authUrl(): string {
    return `${this.keystoneUrl}/v3`;
  }

  /** The next `times` requests that match get `fault`, whatever the rate. */
  script(match: (info: RequestInfo) => boolean, fault: Fault, times = 1): void {
    this.#scripted.push({ match, fault, left: times });
  }

  /** Log entries that got a fault. */
  faults(): LogEntry[] {
    return this.log.filter((e) => e.fault !== undefined);
  }

  async close(): Promise<void> {
    for (const res of this.#hung) res.socket?.destroy();
    this.#hung.clear();
    for (const server of this.#servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.#agent.destroy();
  }

  async #handle(service: Service, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const info: RequestInfo = { seq: ++this.#seq, service, method, path, op: classify(service, method, path) };
    const entry: LogEntry = { seq: info.seq, service, method, path, op: info.op, bytesUp: 0, at: Date.now() };
    this.log.push(entry);
    res.on('close', () => {
      if (!res.writableFinished) entry.outcome ??= 'client-gone';
    });
    try {
      let body: Buffer | undefined;
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared <= smallBody) {
        body = await readAll(req);
        if (body.length > 0) info.body = body.toString('utf8');
      }
      const decided = this.#decide(info);
      if (decided) {
        entry.fault = decided.fault;
        entry.source = decided.source;
      }
      const fault = decided?.fault;
      if (fault?.kind === 'status' && fault.stage === 'before')
        return this.#inject(service, req, res, entry, fault.status, body === undefined);
      if (fault?.kind === 'hang' && fault.stage === 'before') return this.#hang(req, res, entry);
      if (
        fault?.kind === 'reset' &&
        fault.stage === 'request' &&
        (body === undefined ? !hasBody(req) : body.length === 0)
      ) {
        // Nothing to cut in the middle of: the request never reaches the peer.
        entry.outcome = 'reset';
        req.socket.destroy();
        return;
      }
      await this.#forward(service, req, res, info, entry, body, fault);
    } catch {
      entry.outcome ??= 'client-gone';
      res.socket?.destroy();
    }
  }

  #decide(info: RequestInfo): { fault: Fault; source: LogEntry['source'] & string } | undefined {
    const scripted = this.#scripted.find((s) => s.left > 0 && s.match(info));
    if (scripted) {
      scripted.left--;
      return { fault: scripted.fault, source: 'scripted' };
    }
    const tapped = this.tap?.onRequest?.(info);
    if (tapped) return { fault: tapped, source: 'tap' };
    const services = this.#options.services ?? ['keystone', 'glance'];
    if (this.rate <= 0 || !services.includes(info.service)) return undefined;
    if (this.#rng.next() >= this.rate) return undefined;
    return { fault: this.#randomFault(info), source: 'random' };
  }

  #randomFault(info: RequestInfo): Fault {
    const rng = this.#rng;
    const weights = this.#options.weights ?? { status: 1, reset: 1, hang: 1, slow: 1 };
    const kind = rng.weighted<FaultKind>(weights);
    const before = rng.next() < 0.5;
    switch (kind) {
      case 'status':
        return { kind, status: rng.pick([500, 502, 503, 504]), stage: before ? 'before' : 'after' };
      case 'reset': {
        const size =
          info.body !== undefined
            ? Buffer.byteLength(info.body)
            : info.op === 'upload' || info.op === 'stage'
              ? 4 * 1024 * 1024
              : 0;
        return before
          ? { kind, stage: 'request', afterBytes: size > 0 ? rng.int(0, size - 1) : 0 }
          : { kind, stage: 'response', afterBytes: rng.int(0, 2048) };
      }
      case 'hang':
        return { kind, stage: before ? 'before' : 'after' };
      case 'slow':
        return {
          kind,
          bytesPerSecond: this.#options.slowBytesPerSecond ?? 2 * 1024 * 1024,
          latencyMs: rng.int(50, 500),
        };
    }
  }

  async #forward(
    service: Service,
    req: IncomingMessage,
    res: ServerResponse,
    info: RequestInfo,
    entry: LogEntry,
    body: Buffer | undefined,
    fault: Fault | undefined,
  ): Promise<void> {
    const origin = new URL(service === 'keystone' ? this.#options.keystone : this.#options.glance);
    const slow = fault?.kind === 'slow' ? fault : undefined;
    const cutAt = fault?.kind === 'reset' && fault.stage === 'request' ? fault.afterBytes : undefined;
    if (slow) await sleep(slow.latencyMs);
    const upstream = httpRequest({
      host: origin.hostname,
      port: origin.port,
      method: info.method,
      path: info.path,
      agent: this.#agent,
      headers: forwardHeaders(req.headers, origin.host),
    });
    // The client went away (gave up, was killed): so does the request to the peer, as it would without a proxy.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      upstream.once('response', resolve);
      upstream.once('error', reject);
    });
    answered.catch(() => undefined);

    const cut = () => {
      entry.outcome = 'reset';
      upstream.destroy();
      req.socket.destroy();
    };
    const send = async (chunk: Buffer): Promise<boolean> => {
      if (cutAt !== undefined && entry.bytesUp + chunk.length > cutAt) {
        const part = chunk.subarray(0, Math.max(0, cutAt - entry.bytesUp));
        if (part.length > 0) await write(upstream, part);
        entry.bytesUp += part.length;
        cut();
        return false;
      }
      for (const slice of slow ? slices(chunk, slow.bytesPerSecond) : [chunk]) {
        if (upstream.destroyed) return false;
        await write(upstream, slice);
        entry.bytesUp += slice.length;
        this.tap?.onUploadProgress?.(info, entry.bytesUp);
        if (slow) await sleep((slice.length * 1000) / slow.bytesPerSecond);
      }
      return true;
    };
    try {
      let whole = true;
      if (body !== undefined) {
        if (body.length > 0) whole = await send(body);
      } else {
        for await (const chunk of req) {
          whole = await send(chunk as Buffer);
          if (!whole) break;
        }
      }
      if (!whole) return;
      if (cutAt !== undefined) return cut(); // the whole body fitted below the cut: the peer still never sees its end
      upstream.end();
    } catch {
      upstream.destroy();
      res.socket?.destroy();
      entry.outcome ??= 'client-gone';
      return;
    }

    let up: IncomingMessage;
    try {
      up = await answered;
    } catch {
      entry.outcome ??= 'upstream-error';
      res.socket?.destroy();
      return;
    }
    entry.upstreamStatus = up.statusCode ?? 0;
    this.tap?.onUpstreamResponse?.(info, entry.upstreamStatus);
    if (fault?.kind === 'status') {
      up.resume();
      return this.#inject(service, req, res, entry, fault.status, false);
    }
    if (fault?.kind === 'hang') {
      up.resume();
      return this.#hang(req, res, entry);
    }
    const headers = responseHeaders(up.headers);
    if (fault?.kind === 'reset') {
      const data = await readAll(up, 1024 * 1024);
      entry.outcome = 'reset';
      const part = data.subarray(0, Math.min(fault.afterBytes, Math.floor(data.length / 2)));
      if (data.length === 0) {
        res.socket?.destroy();
        return;
      }
      res.writeHead(up.statusCode ?? 502, { ...headers, 'content-length': data.length });
      res.write(part, () => res.socket?.destroy());
      return;
    }
    if (service === 'keystone' && info.op === 'auth' && (up.statusCode ?? 0) < 300) {
      const data = await readAll(up);
      const rewritten = Buffer.from(rewriteCatalog(data.toString('utf8'), this.glanceUrl));
      res.writeHead(up.statusCode ?? 200, { ...headers, 'content-length': rewritten.length });
      res.end(rewritten);
      entry.outcome = 'answered';
      return;
    }
    res.writeHead(up.statusCode ?? 502, headers);
    try {
      for await (const chunk of up) {
        for (const slice of slow ? slices(chunk as Buffer, slow.bytesPerSecond) : [chunk as Buffer]) {
          if (res.destroyed) return;
          await write(res, slice);
          if (slow) await sleep((slice.length * 1000) / slow.bytesPerSecond);
        }
      }
      res.end();
      entry.outcome = 'answered';
    } catch {
      res.socket?.destroy();
    }
  }

  #inject(
    service: Service,
    req: IncomingMessage,
    res: ServerResponse,
    entry: LogEntry,
    status: number,
    bodyUnread: boolean,
  ): void {
    const title = STATUS_CODES[status] ?? 'Error';
    const message = `fault injected by the test proxy (request ${entry.seq})`;
    // Shaped like the peer's own errors, so that the client's error parsing is exercised too.
    const payload = JSON.stringify(
      service === 'keystone' ? { error: { code: status, title, message } } : { code: status, title, message },
    );
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(payload),
      ...(bodyUnread ? { connection: 'close' } : {}),
    });
    res.end(payload);
    if (bodyUnread) req.resume();
    entry.outcome = 'injected';
  }

  #hang(req: IncomingMessage, res: ServerResponse, entry: LogEntry): void {
    entry.outcome = 'hung';
    req.resume();
    this.#hung.add(res);
    const limit = setTimeout(() => res.socket?.destroy(), this.#options.hangLimitMs ?? 60_000);
    limit.unref();
    res.on('close', () => {
      clearTimeout(limit);
      this.#hung.delete(res);
    });
  }
}

/** Glance v2 / Keystone v3 routes a sync uses, by method and path. */
export function classify(service: Service, method: string, url: string): Operation {
  const path = url.split('?')[0]!.replace(/\/+$/, '');
  if (service === 'keystone') return /\/auth\/tokens$/.test(path) ? 'auth' : 'other';
  if (path === '/v2/images') return method === 'GET' ? 'list' : method === 'POST' ? 'create' : 'other';
  const image = /^\/v2\/images\/[^/]+(\/.*)?$/.exec(path);
  if (!image) return 'other';
  const rest = image[1] ?? '';
  if (rest === '')
    return method === 'GET' ? 'read' : method === 'PATCH' ? 'patch' : method === 'DELETE' ? 'delete' : 'other';
  if (rest === '/file') return method === 'PUT' ? 'upload' : method === 'GET' ? 'download' : 'other';
  if (rest === '/stage') return 'stage';
  if (rest === '/import') return 'import';
  if (rest.startsWith('/actions/')) return 'action';
  return 'other';
}

/** The token's catalog with every `image` endpoint moved to `glanceUrl` (same path). */
export function rewriteCatalog(text: string, glanceUrl: string): string {
  let document: { token?: { catalog?: Array<{ type?: string; endpoints?: Array<{ url?: string }> }> } };
  try {
    document = JSON.parse(text) as typeof document;
  } catch {
    return text;
  }
  for (const service of document.token?.catalog ?? []) {
    if (service.type !== 'image') continue;
    for (const endpoint of service.endpoints ?? []) {
      if (typeof endpoint.url !== 'string') continue;
      const original = new URL(endpoint.url);
      endpoint.url = `${glanceUrl}${original.pathname === '/' ? '' : original.pathname.replace(/\/+$/, '')}`;
    }
  }
  return JSON.stringify(document);
}

function forwardHeaders(headers: IncomingHttpHeaders, host: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { host };
  for (const [key, value] of Object.entries(headers)) if (!hopByHop.has(key) && value !== undefined) out[key] = value;
  return out;
}

function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers))
    if (!hopByHop.has(key) && key !== 'content-length' && value !== undefined) out[key] = value;
  if (headers['content-length'] !== undefined) out['content-length'] = headers['content-length'];
  return out;
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

async function readAll(stream: AsyncIterable<unknown>, limit = Infinity): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > limit) break;
  }
  return Buffer.concat(chunks);
}

function* slices(chunk: Buffer, bytesPerSecond: number): Generator<Buffer> {
  // About 20 slices a second, each followed by its share of a second: the stream keeps moving at
  // the throttled rate (no idle timeout needs to fire for a slow but steady transfer).
  const size = Math.max(512, Math.floor(bytesPerSecond / 20));
  for (let offset = 0; offset < chunk.length; offset += size) yield chunk.subarray(offset, offset + size);
}

async function write(stream: NodeJS.WritableStream & { destroyed: boolean }, chunk: Buffer): Promise<void> {
  if (stream.destroyed) throw new Error('stream destroyed');
  if (stream.write(chunk)) return;
  const done = new AbortController();
  try {
    await Promise.race([
      once(stream as never, 'drain', { signal: done.signal }),
      once(stream as never, 'close', { signal: done.signal }).then(() => Promise.reject(new Error('stream closed'))),
    ]);
  } finally {
    done.abort();
  }
}
