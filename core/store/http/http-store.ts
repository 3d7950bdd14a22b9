import http from 'node:http';
import https from 'node:https';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import axios, { type AxiosInstance, type AxiosResponse } from 'axios';
import { VisorError } from '../../errors.js';
import type { Checksums } from '../../image/model.js';
import type { ByteRange, GetResult, ObjectInfo, PutResult, Store } from '../port.js';
import { checkRange } from '../keys.js';
import { guardedLookup, isPrivateAddress } from './address-guard.js';

export interface HttpStoreOptions {
  /** Allow references to loopback/private/link-local addresses (off: SSRF protection). */
  allowPrivateNetworks?: boolean;
  timeoutMs?: number;
  maxRedirects?: number;
}

/**
 * Read-only references to images served over HTTP(S), as VISOR's http store: size and
 * checksums come from the response headers when the server gives them (Content-Length,
 * Content-MD5, an md5-looking ETag, X-Checksum-Sha256 / -Sha512); ranges are passed on.
 */
export class HttpStore implements Store {
  readonly kind = 'http';
  readonly capabilities = { writable: false, ranges: true };
  readonly #http: AxiosInstance;
  readonly #allowPrivate: boolean;
  readonly #agents: [http.Agent, https.Agent];

  constructor(options: HttpStoreOptions = {}) {
    this.#allowPrivate = options.allowPrivateNetworks ?? false;
    const lookup = this.#allowPrivate ? {} : { lookup: guardedLookup as never };
    this.#agents = [new http.Agent({ keepAlive: true, ...lookup }), new https.Agent({ keepAlive: true, ...lookup })];
    this.#http = axios.create({
      timeout: options.timeoutMs ?? 30_000,
      maxRedirects: options.maxRedirects ?? 5,
      httpAgent: this.#agents[0],
      httpsAgent: this.#agents[1],
      validateStatus: () => true,
      decompress: false,
      proxy: false,
    });
  }

  async put(): Promise<PutResult> {
    throw new VisorError('unsupported', 'the http store is read-only: register the URL as a location instead');
  }

  async head(uri: string): Promise<ObjectInfo> {
    const response = await this.#request('HEAD', uri);
    response.data?.destroy?.();
    const size = contentLength(response);
    if (size === undefined) throw new VisorError('invalidResponse', `${redactUrl(uri)} does not say how big it is (no Content-Length)`);
    return { size, checksums: headerChecksums(response), ...optional('contentType', header(response, 'content-type')), ...optional('lastModified', lastModified(response)) };
  }

  async get(uri: string, options: { range?: ByteRange; signal?: AbortSignal } = {}): Promise<GetResult> {
    if (!options.range) {
      const response = await this.#request('GET', uri, {}, options.signal);
      const size = contentLength(response);
      if (size === undefined) {
        response.data.destroy();
        throw new VisorError('invalidResponse', `${redactUrl(uri)} does not say how big it is (no Content-Length)`);
      }
      return { stream: response.data, size };
    }
    const { size } = await this.head(uri);
    const { start, end } = checkRange(options.range, size);
    const response = await this.#request('GET', uri, { range: `bytes=${start}-${end}` }, options.signal);
    // A server that ignores Range sends everything: cut the asked-for bytes out of it.
    if (response.status === 206) return { stream: response.data, size, range: { start, end } };
    const slice = new Slice(start, end);
    slice.on('end', () => response.data.destroy());
    return { stream: response.data.pipe(slice), size, range: { start, end } };
  }

  async delete(): Promise<void> {
    throw new VisorError('unsupported', 'the http store is read-only: the referenced file is not visor\'s to delete');
  }

  async close(): Promise<void> {
    for (const agent of this.#agents) agent.destroy();
  }

  async #request(method: 'GET' | 'HEAD', uri: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<AxiosResponse<Readable>> {
    const url = parseHttpUrl(uri);
    if (!this.#allowPrivate && isIpLiteralPrivate(url.hostname)) {
      throw new VisorError('forbidden', `refusing ${redactUrl(uri)}: a private or local address (set allowPrivateNetworks to allow it)`);
    }
    let response: AxiosResponse<Readable>;
    try {
      response = await this.#http.request<Readable>({ method, url: url.href, headers, responseType: 'stream', ...(signal ? { signal } : {}) });
    } catch (error) {
      const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
      if (code === 'EVISORPRIVATE') throw new VisorError('forbidden', `refusing ${redactUrl(uri)}: it resolves to a private or local address`, { cause: error });
      if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') throw new VisorError('timeout', `${redactUrl(uri)} did not answer in time`, { cause: error });
      throw new VisorError('unavailable', `cannot fetch ${redactUrl(uri)}: ${(error as Error).message}`, { cause: error });
    }
    if (response.status === 404 || response.status === 410) {
      response.data?.destroy?.();
      throw new VisorError('notFound', `${redactUrl(uri)} answered ${response.status}`);
    }
    if (response.status === 401 || response.status === 403) {
      response.data?.destroy?.();
      throw new VisorError('forbidden', `${redactUrl(uri)} answered ${response.status}`);
    }
    if (response.status === 416) {
      response.data?.destroy?.();
      throw new VisorError('invalidInput', `${redactUrl(uri)} cannot serve that range`);
    }
    if (response.status >= 300) {
      response.data?.destroy?.();
      throw new VisorError(response.status >= 500 ? 'unavailable' : 'invalidResponse', `${redactUrl(uri)} answered ${response.status}`);
    }
    return response;
  }
}

function parseHttpUrl(uri: string): URL {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (error) {
    throw new VisorError('invalidInput', `not a URL: ${uri}`, { cause: error });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new VisorError('invalidInput', `not an http(s) URL: ${redactUrl(uri)}`);
  return url;
}

function isIpLiteralPrivate(hostname: string): boolean {
  const bare = hostname.replace(/^\[|\]$/g, '');
  return /^[\d.]+$|:/.test(bare) && isPrivateAddress(bare);
}

/** URLs may carry credentials: never repeat them in messages. */
export function redactUrl(uri: string): string {
  try {
    const url = new URL(uri);
    if (url.password) url.password = '***';
    if (url.username) url.username = '***';
    return url.href;
  } catch {
    return uri.length > 200 ? `${uri.slice(0, 200)}…` : uri;
  }
}

function header(response: AxiosResponse, name: string): string | undefined {
  const value = response.headers[name] as unknown;
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function contentLength(response: AxiosResponse): number | undefined {
  const value = header(response, 'content-length');
  const n = value === undefined ? NaN : Number(value);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function headerChecksums(response: AxiosResponse): Checksums {
  const out: Checksums = {};
  const md5 = header(response, 'content-md5');
  if (md5) {
    const hex = Buffer.from(md5, 'base64').toString('hex');
    if (hex.length === 32) out.md5 = hex;
  }
  const etag = header(response, 'etag')?.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  if (!out.md5 && etag && /^[0-9a-f]{32}$/.test(etag)) out.md5 = etag;
  const sha256 = header(response, 'x-checksum-sha256')?.toLowerCase();
  if (sha256 && /^[0-9a-f]{64}$/.test(sha256)) out.sha256 = sha256;
  const sha512 = header(response, 'x-checksum-sha512')?.toLowerCase();
  if (sha512 && /^[0-9a-f]{128}$/.test(sha512)) out.sha512 = sha512;
  return out;
}

function lastModified(response: AxiosResponse): string | undefined {
  const value = header(response, 'last-modified');
  const date = value ? new Date(value) : undefined;
  return date && !Number.isNaN(date.getTime()) ? date.toISOString() : undefined;
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

/** Passes on only bytes first..last (inclusive) of what flows through. */
class Slice extends Transform {
  #offset = 0;
  readonly #first: number;
  readonly #last: number;

  constructor(first: number, last: number) {
    super();
    this.#first = first;
    this.#last = last;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const from = Math.max(0, this.#first - this.#offset);
    const to = Math.min(chunk.length, this.#last + 1 - this.#offset);
    this.#offset += chunk.length;
    if (to > from) this.push(chunk.subarray(from, to));
    if (this.#offset > this.#last) {
      this.push(null);
      callback();
      return;
    }
    callback();
  }
}
