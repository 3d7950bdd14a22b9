import http from 'node:http';
import https from 'node:https';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { AxiosInstance, AxiosResponse } from 'axios';
import axios from '../../wire/axios.js';
import { VisorError } from '../../errors.js';
import type { Checksums } from '../../image/model.js';
import type { ByteRange, GetResult, ObjectInfo, PutResult, Store } from '../port.js';
import { ExactLength } from '../../transfer/exact-length.js';
import { checkRange } from '../keys.js';
import { AddressPolicy } from '../../wire/address-guard.js';

export interface HttpStoreOptions {
  /** Allow references to loopback/private/link-local addresses (off: SSRF protection). */
  allowPrivateNetworks?: boolean;
  /** CIDR blocks allowed although private (an internal mirror); the rest stays refused. */
  allowNetworks?: readonly string[];
  timeoutMs?: number;
  maxRedirects?: number;
}

/**
 * Read-only references to images served over HTTP(S), as VISOR's http store: size and
 * checksums come from the response headers when the server gives them (Content-Length,
 * Content-MD5, an md5-looking ETag, X-Checksum-Sha256 / -Sha512); ranges are passed on, and
 * what comes back is checked (Content-Range, length) before a byte of it is passed on.
 * Redirects are followed here, not by the HTTP library, so that every hop passes the same
 * address check as the first URL.
 */
export class HttpStore implements Store {
  readonly kind = 'http';
  readonly capabilities = { writable: false, ranges: true };
  readonly #http: AxiosInstance;
  readonly #policy: AddressPolicy;
  readonly #maxRedirects: number;
  readonly #agents: [http.Agent, https.Agent];

  constructor(options: HttpStoreOptions = {}) {
    this.#policy = new AddressPolicy({
      allowPrivate: options.allowPrivateNetworks ?? false,
      allowNetworks: options.allowNetworks ?? [],
    });
    this.#maxRedirects = options.maxRedirects ?? 5;
    const lookup = options.allowPrivateNetworks ? {} : { lookup: this.#policy.lookup as never };
    this.#agents = [new http.Agent({ keepAlive: true, ...lookup }), new https.Agent({ keepAlive: true, ...lookup })];
    this.#http = axios.create({
      timeout: options.timeoutMs ?? 30_000,
      maxRedirects: 0,
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
    if (size === undefined)
      throw new VisorError('invalidResponse', `${redactUrl(uri)} does not say how big it is (no Content-Length)`);
    return {
      size,
      checksums: headerChecksums(response),
      ...optional('contentType', header(response, 'content-type')),
      ...optional('lastModified', lastModified(response)),
    };
  }

  async get(uri: string, options: { range?: ByteRange; signal?: AbortSignal } = {}): Promise<GetResult> {
    if (!options.range) {
      const response = await this.#request('GET', uri, {}, options.signal);
      const size = contentLength(response);
      if (size === undefined || response.status !== 200) {
        response.data.destroy();
        const noLength = 'does not say how big it is (no Content-Length)';
        const why = size === undefined ? noLength : `answered ${response.status} to a plain GET`;
        throw new VisorError('invalidResponse', `${redactUrl(uri)} ${why}`);
      }
      return { stream: exactly(response.data, size, uri), size };
    }
    const { size } = await this.head(uri);
    const { start, end } = checkRange(options.range, size);
    const response = await this.#request('GET', uri, { range: `bytes=${start}-${end}` }, options.signal);
    const length = contentLength(response);
    if (response.status === 206) {
      // Exactly the range asked for, of the object HEAD described: anything else is refused, not passed on.
      const got = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(response, 'content-range')?.trim() ?? '');
      const wanted = end - start + 1;
      const sameRange = got !== null && Number(got[1]) === start && Number(got[2]) === end;
      const sameObject = got !== null && (got[3] === '*' || Number(got[3]) === size);
      if (!sameRange || !sameObject || (length !== undefined && length !== wanted)) {
        response.data.destroy();
        const range = header(response, 'content-range') ?? 'missing';
        const said = `Content-Range ${range}, Content-Length ${length ?? 'missing'}`;
        const asked = `a range request for bytes ${start}-${end}/${size}`;
        throw new VisorError('invalidResponse', `${redactUrl(uri)} answered ${asked} with ${said}`);
      }
      return { stream: exactly(response.data, wanted, uri), size, range: { start, end } };
    }
    if (response.status !== 200 || length !== size) {
      response.data.destroy();
      const said = `${response.status} and ${length ?? 'no'} Content-Length (the object has ${size} bytes)`;
      throw new VisorError('invalidResponse', `${redactUrl(uri)} answered a range request with ${said}`);
    }
    // A server that ignores Range sends everything: cut the asked-for bytes out of it.
    const slice = new Slice(start, end);
    slice.on('end', () => response.data.destroy());
    return { stream: exactly(response.data.pipe(slice), end - start + 1, uri), size, range: { start, end } };
  }

  async delete(): Promise<void> {
    throw new VisorError('unsupported', "the http store is read-only: the referenced file is not visor's to delete");
  }

  async close(): Promise<void> {
    for (const agent of this.#agents) agent.destroy();
  }

  async #request(
    method: 'GET' | 'HEAD',
    uri: string,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<AxiosResponse<Readable>> {
    let url = parseHttpUrl(uri);
    let response: AxiosResponse<Readable>;
    for (let hop = 0; ; hop++) {
      response = await this.#send(method, url, uri, headers, signal);
      const location = header(response, 'location');
      if (response.status < 300 || response.status >= 400 || response.status === 304 || location === undefined) break;
      response.data?.destroy?.();
      if (hop >= this.#maxRedirects) {
        throw new VisorError('invalidResponse', `${redactUrl(uri)} redirects more than ${this.#maxRedirects} times`);
      }
      const next = parseRedirect(location, url, uri);
      if (url.protocol === 'https:' && next.protocol === 'http:') {
        const why = `it redirects from https to plain http (${redactUrl(next.href)})`;
        throw new VisorError('forbidden', `refusing ${redactUrl(uri)}: ${why}`);
      }
      url = next;
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
      throw new VisorError(
        response.status >= 500 ? 'unavailable' : 'invalidResponse',
        `${redactUrl(uri)} answered ${response.status}`,
      );
    }
    return response;
  }

  /** One request to one URL: an IP literal is checked here, a name by the agents' lookup at connect time. */
  async #send(
    method: 'GET' | 'HEAD',
    url: URL,
    uri: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<AxiosResponse<Readable>> {
    const redirected = url.href !== parseHttpUrl(uri).href;
    const what = redirected ? `${redactUrl(uri)} (redirected to ${redactUrl(url.href)})` : redactUrl(uri);
    if (!this.#policy.permitsHost(url.hostname)) {
      const why = "a private, local or reserved address (see the http store's allowNetworks)";
      throw new VisorError('forbidden', `refusing ${what}: ${why}`);
    }
    try {
      const options = { responseType: 'stream' as const, ...(signal ? { signal } : {}) };
      const request = { method, url: url.href, headers, ...options };
      return await this.#http.request<Readable>(request);
    } catch (error) {
      const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
      if (code === 'EVISORPRIVATE') {
        const why = 'it resolves to a private, local or reserved address';
        throw new VisorError('forbidden', `refusing ${what}: ${why}`, { cause: error });
      }
      if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') {
        throw new VisorError('timeout', `${what} did not answer in time`, { cause: error });
      }
      throw new VisorError('unavailable', `cannot fetch ${what}: ${(error as Error).message}`, { cause: error });
    }
  }
}

function parseRedirect(location: string, base: URL, uri: string): URL {
  let next: URL;
  try {
    next = new URL(location, base);
  } catch (error) {
    const why = 'redirects to something that is not a URL';
    throw new VisorError('invalidResponse', `${redactUrl(uri)} ${why}`, { cause: error });
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw new VisorError('forbidden', `refusing ${redactUrl(uri)}: it redirects to a ${next.protocol} URL`);
  }
  return next;
}

/** The body, checked to be exactly `length` bytes as it streams. */
function exactly(stream: Readable, length: number, uri: string): Readable {
  const exact = new ExactLength(length, redactUrl(uri));
  stream.on('error', (error) => exact.destroy(error));
  exact.on('close', () => stream.destroy());
  return stream.pipe(exact);
}

function parseHttpUrl(uri: string): URL {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (error) {
    throw new VisorError('invalidInput', `not a URL: ${uri}`, { cause: error });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new VisorError('invalidInput', `not an http(s) URL: ${redactUrl(uri)}`);
  return url;
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
