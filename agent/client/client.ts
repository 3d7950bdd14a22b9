import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { rootCertificates } from 'node:tls';
import type { AxiosInstance, AxiosResponse, AxiosStatic } from 'axios';
import {
  CONTENT_HASH_HEADER,
  DECODED_LENGTH_HEADER,
  signRequest,
  STREAMING_PAYLOAD,
  TRAILER_SIGNATURE_HEADER,
  trailerSignature,
  type SignableRequest,
} from '../../core/auth/signing.js';
import { isVisorError, VisorError, type ErrorKind } from '../../core/errors.js';
import { decodeHeaderValue, encodeHeaderValue, META_PREFIX } from '../api/headers.js';
import { blockGet, NotPlainBody, type BlockSink, type ResponseHead } from './block-get.js';
import { type FileBody, sendFileBody } from './file-body.js';
import type { ClientSettings } from './credentials.js';

export type WireValue = string | number | string[] | null;
export type WireMetadata = Record<string, WireValue>;
export type WireImage = Record<string, unknown>;

/** An upload body: a stream, or an open file (read in large blocks; the cheaper way, see sendFileBody). */
export type UploadSource = StreamBody | FileBody;

export interface StreamBody {
  stream: Readable;
  size: number;
  onProgress?: (bytes: number) => void;
}

/** What a download's receiver learns before the bytes: the length of the body and the image's metadata. */
export interface DownloadInfo {
  size: number;
  meta: Record<string, string>;
}

/** Counts bytes (and hashes them) as they go by: progress and end-to-end checks without a second read. */
class Meter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  #hex: string | undefined;
  /** The sha256 of everything that went by (once the stream has ended). */
  digest(): string {
    this.#hex ??= this.hash.digest('hex');
    return this.#hex;
  }
  constructor(private readonly onProgress?: (bytes: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    this.onProgress?.(this.bytes);
    callback(null, chunk);
  }
}

const kindsByStatus: Readonly<Record<number, ErrorKind>> = {
  401: 'auth',
  403: 'forbidden',
  404: 'notFound',
  409: 'conflict',
  413: 'tooLarge',
  422: 'unsafe',
};
const kindByStatus = (status: number): ErrorKind =>
  kindsByStatus[status] ?? (status >= 500 ? 'unavailable' : 'invalidInput');

/** The visor API client: signs every request with the user's keys (VISOR-HMAC-SHA256). */
export class VisorClient {
  readonly #settings: ClientSettings;
  readonly #timeoutMs: number;
  readonly #agents: { http: http.Agent; https: https.Agent };
  #http: Promise<AxiosInstance> | undefined;

  constructor(settings: ClientSettings, options: { timeoutMs?: number } = {}) {
    this.#settings = settings;
    this.#timeoutMs = options.timeoutMs ?? 0;
    this.#agents = {
      http: new http.Agent({ keepAlive: true }),
      https: new https.Agent({ keepAlive: true, ...trustedCas(settings) }),
    };
  }

  /** axios, loaded on first use: a download (which does not use it) starts faster without it. */
  #axios(): Promise<AxiosInstance> {
    this.#http ??= import('../../core/wire/axios.js').then(({ default: axios }) => this.#createAxios(axios));
    return this.#http;
  }

  #createAxios(axios: AxiosStatic): AxiosInstance {
    return axios.create({
      baseURL: this.#settings.url,
      timeout: this.#timeoutMs,
      maxBodyLength: Infinity,
      maxContentLength: Infinity,
      maxRedirects: 0,
      proxy: false,
      decompress: false,
      validateStatus: () => true,
      httpAgent: this.#agents.http,
      httpsAgent: this.#agents.https,
    });
  }

  get url(): string {
    return this.#settings.url;
  }

  /** Every image the caller may see (following every page), brief or detailed. */
  async list(view: 'brief' | 'detail', query: Record<string, string> = {}): Promise<WireImage[]> {
    const images: WireImage[] = [];
    let marker: string | undefined;
    const onePage = query['limit'] !== undefined;
    do {
      const response = await this.#json('GET', view === 'brief' ? '/images' : '/images/detail', {
        query: { ...query, ...(marker ? { marker } : {}) },
      });
      const body = response.data as { images?: WireImage[]; next?: string };
      images.push(...(body.images ?? []));
      marker = onePage ? undefined : body.next;
    } while (marker);
    return images;
  }

  /** Detailed metadata as VISOR's HEAD gives it: `x-image-meta-*` headers, decoded. */
  async head(id: string): Promise<Record<string, string>> {
    const response = await this.#send('HEAD', `/images/${encodeURIComponent(id)}`, {});
    // HEAD answers carry no body, so no message: say what the status means.
    if (response.status === 404) throw new VisorError('notFound', `no image with id ${id}`);
    await this.#check(response);
    return imageMeta(response.headers as Record<string, string | string[] | undefined>);
  }

  async meta(id: string): Promise<WireImage> {
    return ((await this.#json('GET', `/images/${encodeURIComponent(id)}/meta`, {})).data as { image: WireImage }).image;
  }

  /** Registers an image: metadata only, a location to reference, or metadata + the file. */
  async add(meta: WireMetadata, file?: UploadSource): Promise<WireImage> {
    if (!file)
      return ((await this.#json('POST', '/images', { json: { image: meta } })).data as { image: WireImage }).image;
    const { image } = await this.#upload('POST', '/images', meta, file);
    return image;
  }

  async update(id: string, meta: WireMetadata, file?: UploadSource): Promise<WireImage> {
    const path = `/images/${encodeURIComponent(id)}`;
    if (!file) return ((await this.#json('PUT', path, { json: { image: meta } })).data as { image: WireImage }).image;
    return (await this.#upload('PUT', path, meta, file)).image;
  }

  /** A JSON GET of the agent's routes (/status). */
  async getJson(path: string, query?: Record<string, string>): Promise<unknown> {
    return (await this.#json('GET', path, query ? { query } : {})).data;
  }

  /** A JSON POST without a body (/targets/:name/sync). */
  async postJson(path: string): Promise<unknown> {
    const [pathname, query] = path.split('?');
    // An empty JSON object as the body: a bodyless POST would get a content type from the HTTP library that the
    // signature did not cover.
    return (
      await this.#json('POST', pathname!, {
        json: {},
        ...(query ? { query: Object.fromEntries(new URLSearchParams(query)) } : {}),
      })
    ).data;
  }

  /** deprecate | undeprecate | restore | purge, with the deprecation's fields for `deprecate`. */
  async lifecycle(
    id: string,
    operation: 'deprecate' | 'undeprecate' | 'restore' | 'purge',
    body: Record<string, string> = {},
  ): Promise<WireImage> {
    const path = `/images/${encodeURIComponent(id)}/${operation}`;
    return ((await this.#json('POST', path, { json: body })).data as { image: WireImage }).image;
  }

  async delete(id: string): Promise<WireImage> {
    return ((await this.#json('DELETE', `/images/${encodeURIComponent(id)}`, {})).data as { image: WireImage }).image;
  }

  /**
   * Streams an image's file; `size` is the whole file's. Node's HTTP client, not axios (which
   * costs several CPU-seconds per GiB more); `downloadTo` is cheaper still.
   */
  async download(id: string): Promise<{ stream: Readable; size: number; meta: Record<string, string> }> {
    const url = this.#urlOf(`/images/${encodeURIComponent(id)}`);
    const headers = this.#signedHeaders('GET', url.pathname, []);
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const secure = url.protocol === 'https:';
      const agent = secure ? this.#agents.https : this.#agents.http;
      const request = (secure ? https : http).get(url, { headers, agent }, resolve);
      request.on('error', (error) => reject(this.#transportError(error)));
    });
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      throw this.#statusError(status, Buffer.concat(chunks));
    }
    const meta = imageMeta(response.headers);
    return { stream: response, size: Number(response.headers['content-length'] ?? meta['size'] ?? 0), meta };
  }

  /**
   * Downloads an image's file into what `open` returns, once it has seen the size and metadata
   * (it may refuse by throwing: nothing is downloaded then). Over plain HTTP the socket is read
   * into a few large reused buffers lent to the sink in turn (blockGet); over HTTPS, or when the
   * answer is not a plain Content-Length body, through Node's HTTP client. Resolves once the
   * sink has taken every byte; rejects on a cut-off body, leaving the sink's cleanup to the caller.
   */
  async downloadTo(
    id: string,
    open: (info: DownloadInfo) => Promise<BlockSink>,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    options.signal?.throwIfAborted();
    const url = this.#urlOf(`/images/${encodeURIComponent(id)}`);
    if (url.protocol === 'http:') {
      const openSink = (head: ResponseHead) =>
        open({ size: Number(head.headers['content-length']), meta: imageMeta(head.headers) });
      const headers = this.#signedHeaders('GET', url.pathname, []);
      try {
        const { signal } = options;
        const { head, errorBody } = await blockGet(url, headers, openSink, signal ? { signal } : {});
        if (errorBody) throw this.#statusError(head.status, errorBody);
        return;
      } catch (error) {
        if (!(error instanceof NotPlainBody)) throw isVisorError(error) ? error : this.#transportError(error);
      }
    }
    const { stream, size, meta } = await this.download(id);
    const sink = await open({ size, meta }).catch((error: unknown) => {
      stream.destroy();
      throw error;
    });
    // An abort (Ctrl-C) ends the response stream, so the loop below throws and the caller cleans up.
    const onAbort = () => stream.destroy(options.signal?.reason as Error);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let received = 0;
    try {
      for await (const chunk of stream) {
        received += (chunk as Buffer).length;
        await sink.write(chunk as Buffer);
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    if (received !== size) {
      throw new VisorError('unavailable', `the download was cut off ${size - received} bytes before its end`);
    }
  }

  /**
   * Streams a file up, chunked, with its sha256 computed on the way and signed in the trailers
   * (STREAMING-SHA256-TRAILER): the server refuses the image unless the bytes it stored are the
   * ones this client signed, so nobody in between can swap them.
   */
  async #upload(
    method: 'POST' | 'PUT',
    path: string,
    meta: WireMetadata,
    file: UploadSource,
  ): Promise<{ image: WireImage }> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/octet-stream',
      'transfer-encoding': 'chunked',
      trailer: `${CONTENT_HASH_HEADER}, ${TRAILER_SIGNATURE_HEADER}`,
      [CONTENT_HASH_HEADER]: STREAMING_PAYLOAD,
      [DECODED_LENGTH_HEADER]: String(file.size),
    };
    for (const [key, value] of Object.entries(meta)) {
      if (value === null) continue;
      headers[`${META_PREFIX}${key.toLowerCase()}`] = encodeHeaderValue(
        Array.isArray(value) ? value.join(',') : String(value),
      );
    }
    const { accessKey, secretKey } = this.#settings;
    const signable = { method, path: new URL(path, 'http://x').pathname, query: [], headers };
    const signed = accessKey && secretKey ? signRequest(accessKey, secretKey, signable) : headers;
    const requestSignature = /Signature=([0-9a-f]{64})$/.exec(signed['authorization'] ?? '')?.[1];
    const trailers = (sha256: string): Record<string, string> => ({
      [CONTENT_HASH_HEADER]: sha256,
      ...(secretKey && requestSignature
        ? { [TRAILER_SIGNATURE_HEADER]: trailerSignature(secretKey, requestSignature, sha256) }
        : {}),
    });
    let sent: string | undefined;
    const response = await this.#stream(method, path, signed, async (request, answered) => {
      if ('file' in file) {
        sent = await sendFileBody(request, file, () =>
          answered() ? new VisorError('unavailable', 'the server answered before the upload was sent') : undefined,
        );
      } else sent = await pipeBody(request, file, answered);
      return trailers(sent);
    });
    await this.#check(response);
    const image = (response.data as { image: WireImage }).image;
    // The server checked our signed digest; this checks its answer too (it is what the catalog says).
    const stored = (image['checksums'] as Record<string, string> | undefined)?.['sha256'];
    if (stored !== sent) {
      throw new VisorError(
        'integrity',
        `the server stored different bytes than were sent (sha256 ${stored ?? 'none'} != ${sent}); ` +
          `image ${String(image['_id'])} should be re-uploaded`,
      );
    }
    return { image };
  }

  /**
   * One request with a streamed body and trailers (what axios cannot send); the JSON answer parsed.
   * `send` writes the body (not ending the request) and gives the trailers; it is told whether the
   * server has answered already (a refusal ends the upload: the rest of the file is of no use).
   */
  #stream(
    method: string,
    path: string,
    headers: Record<string, string>,
    send: (request: http.ClientRequest, answered: () => boolean) => Promise<Record<string, string>>,
  ): Promise<AxiosResponse> {
    const url = new URL(path, `${this.#settings.url}/`);
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      let answered = false;
      let failed: unknown;
      const agent = url.protocol === 'https:' ? this.#agents.https : this.#agents.http;
      const request = transport.request(url, { method, headers, agent }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          if (!request.writableEnded) request.destroy();
          const text = Buffer.concat(chunks).toString('utf8');
          let data: unknown = text;
          try {
            data = JSON.parse(text) as unknown;
          } catch {
            // not JSON: #check shows the status
          }
          const status = res.statusCode ?? 0;
          const statusText = res.statusMessage ?? '';
          resolve({ status, statusText, headers: res.headers, data, config: {} } as AxiosResponse);
        });
      });
      request.on('error', (error) => {
        if (answered) return;
        reject(failed ?? this.#transportError(error));
      });
      send(request, () => answered).then(
        (trailers) => {
          if (answered) return;
          request.addTrailers(trailers);
          request.end();
        },
        (error: unknown) => {
          if (answered) return;
          // The body failed (the file, an abort): that is the error to report, not the cut connection.
          failed = this.#transportError(error);
          request.destroy(error as Error);
          reject(failed);
        },
      );
    });
  }

  async #json(
    method: string,
    path: string,
    options: { query?: Record<string, string>; json?: unknown },
  ): Promise<AxiosResponse> {
    const body = options.json === undefined ? undefined : Buffer.from(JSON.stringify(options.json));
    const response = await this.#send(method, path, {
      ...(options.query ? { query: options.query } : {}),
      ...(body ? { body, headers: { 'content-type': 'application/json' } } : {}),
    });
    await this.#check(response);
    return response;
  }

  async #send(
    method: string,
    path: string,
    options: {
      query?: Record<string, string>;
      headers?: Record<string, string>;
      body?: Buffer | Readable;
      responseType?: 'stream';
    },
  ): Promise<AxiosResponse> {
    const query = Object.entries(options.query ?? {});
    const queryString = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (Buffer.isBuffer(options.body))
      headers[CONTENT_HASH_HEADER] = createHash('sha256').update(options.body).digest('hex');
    const signed = this.#sign({ method, path: new URL(path, 'http://x').pathname, query, headers });
    try {
      return await (await this.#axios()).request({
        method,
        url: `${path}${queryString ? `?${queryString}` : ''}`,
        headers: signed,
        ...(options.body !== undefined ? { data: options.body } : {}),
        responseType: options.responseType ?? 'json',
        transitional: { forcedJSONParsing: true, silentJSONParsing: true, clarifyTimeoutError: true },
      });
    } catch (error) {
      throw this.#transportError(error);
    }
  }

  #urlOf(path: string): URL {
    return new URL(`${this.#settings.url}${path}`);
  }

  /** Signed headers of a bodiless request (when the client has keys). */
  #signedHeaders(method: string, path: string, query: [string, string][]): Record<string, string> {
    return this.#sign({ method, path, query, headers: { accept: 'application/json' } });
  }

  #sign(request: SignableRequest): Record<string, string> {
    const { accessKey, secretKey } = this.#settings;
    if (accessKey && secretKey) return signRequest(accessKey, secretKey, request);
    return { ...request.headers } as Record<string, string>;
  }

  #transportError(error: unknown): VisorError {
    if (error instanceof VisorError) return error;
    const code = (error as { code?: string }).code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH') {
      const hint = 'is `visor serve` running there?';
      const message = `cannot reach visor at ${this.#settings.url} (${code}); ${hint}`;
      return new VisorError('unavailable', message, { cause: error });
    }
    if (code === 'ETIMEDOUT' || code === 'ECONNABORTED') {
      return new VisorError('timeout', `visor at ${this.#settings.url} did not answer in time`, { cause: error });
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code ?? '')) {
      const untrusted = `presented a certificate this client does not trust (${code})`;
      const why = `${untrusted}; give the CA with VISOR_CA_FILE or ca_file`;
      return new VisorError('unavailable', `visor at ${this.#settings.url} ${why}`, { cause: error });
    }
    const message = `talking to visor at ${this.#settings.url} failed: ${(error as Error).message}`;
    return new VisorError('unavailable', message, { cause: error });
  }

  /** The error an answer with this status and (JSON) body stands for. */
  #statusError(status: number, body: unknown): VisorError {
    let data = Buffer.isBuffer(body) ? body.toString('utf8') : body;
    if (typeof data === 'string') {
      try {
        data = JSON.parse(data) as unknown;
      } catch {
        // keep the text
      }
    }
    const hasMessage = typeof data === 'object' && data !== null && 'message' in data;
    const message = hasMessage ? String((data as { message: unknown }).message) : `HTTP ${status}`;
    const unsigned = status === 401 && !this.#settings.accessKey;
    const credentials = 'set VISOR_ACCESS_KEY and VISOR_SECRET_KEY, or a profile in ~/.config/visor/credentials';
    const hint = unsigned ? ` (${credentials})` : '';
    return new VisorError(kindByStatus(status), `${message}${hint}`, { details: { status } });
  }

  async #check(response: AxiosResponse): Promise<void> {
    if (response.status < 400) return;
    let data: unknown = response.data;
    if (data && typeof (data as Readable).pipe === 'function') {
      const chunks: Buffer[] = [];
      for await (const chunk of data as Readable) chunks.push(chunk as Buffer);
      data = Buffer.concat(chunks);
    }
    throw this.#statusError(response.status, data);
  }
}

/** The image's metadata from VISOR's `x-image-meta-*` answer headers, decoded. */
function imageMeta(headers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(META_PREFIX) && typeof value === 'string') {
      meta[name.slice(META_PREFIX.length)] = decodeHeaderValue(value);
    }
  }
  return meta;
}

/** The system's CAs plus the one configured for a visor server with its own CA. */
function trustedCas(settings: ClientSettings): { ca?: string[] } {
  if (!settings.caFile) return {};
  try {
    return { ca: [...rootCertificates, readFileSync(settings.caFile, 'utf8')] };
  } catch (error) {
    const why = (error as Error).message;
    throw new VisorError('config', `cannot read the CA file ${settings.caFile}: ${why}`, { cause: error });
  }
}

/**
 * Pipes a stream body into `request` (not ending it) through a Meter; resolves with the sha256 of
 * what was sent. An early answer unpipes it (the rest is of no use).
 */
function pipeBody(request: http.ClientRequest, body: StreamBody, answered: () => boolean): Promise<string> {
  const meter = new Meter(body.onProgress);
  return new Promise((resolve, reject) => {
    body.stream.once('error', (error) => meter.destroy(error));
    meter.on('error', reject);
    // Answered before the end (a refusal): the rest of the body is of no use.
    request.once('response', () => {
      meter.unpipe(request);
      body.stream.destroy();
      reject(new Error('answered before the body was sent'));
    });
    meter.on('end', () =>
      answered() ? reject(new Error('answered before the body was sent')) : resolve(meter.digest()),
    );
    body.stream.pipe(meter).pipe(request, { end: false });
  });
}
