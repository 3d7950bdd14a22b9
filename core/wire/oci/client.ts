import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { rootCertificates } from 'node:tls';
import type { AxiosInstance, AxiosResponse } from 'axios';
import axios from '../axios.js';
import { isVisorError, VisorError } from '../../errors.js';
import { ExactLength } from '../../transfer/exact-length.js';
import { AddressPolicy } from '../address-guard.js';
import { kindOfStatus, kindOfTransportCode, oneLine, tlsTrustCodes } from '../errors.js';
import { basicHeader, type OciCredentials, parseChallenge, repositoryScope, tokenFrom } from './auth.js';
import {
  type Descriptor,
  digestPattern,
  type ImageIndex,
  type ImageManifest,
  imageManifestSchema,
  indexMediaTypes,
  indexSchema,
  manifestMediaTypes,
  mediaTypes,
  parseJson,
  tagListSchema,
} from './media.js';

export interface OciClientOptions {
  /** host[:port] of the registry. */
  registry: string;
  /** Speak http instead of https (a registry on loopback, a lab). */
  plainHttp?: boolean;
  credentials?: OciCredentials;
  /** PEM of the CA(s) the registry's certificate chains to, beside the system's. */
  caBundle?: string;
  /** Blob redirects to private, loopback or link-local addresses are refused unless allowed here. */
  allowPrivateNetworks?: boolean;
  allowNetworks?: readonly string[];
  /** Per request, until the answer's headers (default 30 s); bodies stream as long as bytes flow. */
  timeoutMs?: number;
  /** Manifests over this are refused unread (default 4 MiB, distribution's own limit). */
  maxManifestBytes?: number;
  /** Blobs over this size are uploaded in chunks of `chunkBytes` (default 64 MiB each). */
  chunkBytes?: number;
  /** A tag listing is refused beyond this many tags (default 100,000) or pages (1,000). */
  maxTags?: number;
}

export interface ManifestResult {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface BlobSource {
  digest: string;
  size: number;
  /** A fresh stream of the bytes, or of an inclusive range of them (chunks and retries). */
  open(range?: { start: number; end: number }): Promise<Readable>;
}

type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

interface Call {
  method: Method;
  /** Path and query under the registry (`/v2/...`), or an absolute URL the registry gave (Location). */
  path: string;
  repository?: string;
  actions?: readonly string[];
  headers?: Record<string, string>;
  /** A body: bytes, or a stream opener (called again when an auth challenge makes the call twice). */
  body?: Buffer | (() => Promise<Readable>);
  /** Statuses the caller handles itself; others become errors. */
  accept: readonly number[];
  what: string;
  signal?: AbortSignal | undefined;
}

/**
 * A client of the OCI distribution API (v2) that any conformant registry speaks: manifests by tag
 * and digest, blobs (redirects followed under the same address rules as the http store, bytes
 * verified against their digest while they stream), uploads (monolithic or chunked, the digest
 * computed on the way and checked before the registry commits), mounts, tag listing with `Link`
 * pagination, referrers, and the three auth schemes (anonymous, Basic, the Bearer token flow
 * of the `WWW-Authenticate` challenge). Every answer is checked; failures are VisorErrors whose
 * kind says what happened, and whose messages never carry a credential.
 */
export class OciClient {
  readonly registry: string;
  readonly #base: string;
  readonly #http: AxiosInstance;
  readonly #agents: [http.Agent, https.Agent];
  readonly #policy: AddressPolicy;
  readonly #credentials: OciCredentials;
  readonly #maxManifest: number;
  readonly #chunk: number;
  readonly #maxTags: number;
  /** Authorization header per scope (`repo:actions`), or for the whole registry under ''. */
  readonly #auth = new Map<string, string>();
  /** Agents for blob redirects to other hosts, made on the first one. */
  #guarded: [http.Agent, https.Agent] | undefined;

  constructor(options: OciClientOptions) {
    if (!/^[a-zA-Z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:.]+\](:\d{1,5})?$/.test(options.registry)) {
      throw new VisorError('invalidInput', `"${options.registry}" is not a registry host[:port]`);
    }
    this.registry = options.registry;
    this.#base = `${options.plainHttp ? 'http' : 'https'}://${options.registry}`;
    this.#credentials = options.credentials;
    this.#maxManifest = options.maxManifestBytes ?? 4 * 1024 * 1024;
    this.#chunk = options.chunkBytes ?? 64 * 1024 * 1024;
    this.#maxTags = options.maxTags ?? 100_000;
    this.#policy = new AddressPolicy({
      allowPrivate: options.allowPrivateNetworks ?? false,
      allowNetworks: options.allowNetworks ?? [],
    });
    // The system's CAs and the bundle's: a private registry's CA adds to trust, it does not replace it.
    const ca = options.caBundle ? { ca: [...rootCertificates, options.caBundle] } : {};
    this.#agents = [new http.Agent({ keepAlive: true }), new https.Agent({ keepAlive: true, ...ca })];
    if (options.credentials && 'token' in options.credentials)
      this.#auth.set('', `Bearer ${options.credentials.token}`);
    this.#http = axios.create({
      timeout: options.timeoutMs ?? 30_000,
      maxRedirects: 0,
      httpAgent: this.#agents[0],
      httpsAgent: this.#agents[1],
      validateStatus: () => true,
      decompress: false,
      proxy: false,
      maxBodyLength: Number.POSITIVE_INFINITY,
      maxContentLength: Number.POSITIVE_INFINITY,
      responseType: 'stream',
    });
  }

  /** `GET /v2/`: the registry speaks the API and these credentials are good (for `repository` if given). */
  async ping(repository?: string): Promise<void> {
    const call: Call = { method: 'GET', path: '/v2/', accept: [200], what: 'checking the registry' };
    await drain(await this.#call(repository ? { ...call, repository, actions: ['pull'] } : call));
  }

  /** Every tag of a repository, every page followed (`n` and `Link`), within `maxTags`. */
  async listTags(repository: string, options: { pageSize?: number; signal?: AbortSignal } = {}): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repository}/tags/list?n=${options.pageSize ?? 1000}`;
    for (let page = 0; path !== undefined; page++) {
      if (page >= 1000 || tags.length > this.#maxTags) {
        throw new VisorError('tooLarge', `${this.#where(repository)}: more than ${this.#maxTags} tags or 1000 pages`);
      }
      const response = await this.#call({
        ...this.#pull(repository, options.signal),
        method: 'GET',
        path,
        accept: [200, 404],
        what: 'listing tags',
      });
      if (response.status === 404) {
        await drain(response);
        // distribution answers NAME_UNKNOWN for a repository nothing was pushed to yet: no tags.
        if (page === 0) return [];
        throw new VisorError('invalidResponse', `${this.#where(repository)}: a tag page vanished while listing`);
      }
      const body = await readCapped(response, 4 * 1024 * 1024, `the tag list of ${this.#where(repository)}`);
      const list = parseJson(tagListSchema, body, `the tag list of ${this.#where(repository)}`);
      const before = tags.length;
      tags.push(...(list.tags ?? []));
      const next = nextLink(header(response, 'link'));
      // A page that adds nothing and yet points further would loop forever.
      if (next !== undefined && tags.length === before) {
        throw new VisorError('invalidResponse', `${this.#where(repository)}: an empty tag page links to another`);
      }
      path = next;
    }
    return tags;
  }

  /**
   * A manifest by tag or digest, its bytes kept exactly as sent (their digest is the manifest's
   * identity) and checked: no larger than the cap, the digest the registry names (and the one
   * asked for) equal to the bytes', a media type visor knows.
   */
  async getManifest(repository: string, reference: string, signal?: AbortSignal): Promise<ManifestResult> {
    const response = await this.#call({
      ...this.#pull(repository, signal),
      method: 'GET',
      path: `/v2/${repository}/manifests/${reference}`,
      headers: { accept: [...manifestMediaTypes, ...indexMediaTypes].join(', ') },
      accept: [200],
      what: `reading manifest ${reference}`,
    });
    const where = `manifest ${reference} of ${this.#where(repository)}`;
    const bytes = await readCapped(response, this.#maxManifest, where);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const said = header(response, 'docker-content-digest');
    if ((said !== undefined && said !== digest) || (digestPattern.test(reference) && reference !== digest)) {
      throw new VisorError('integrity', `${where}: its bytes have digest ${digest}, not ${said ?? reference}`);
    }
    let mediaType = header(response, 'content-type')?.split(';')[0]?.trim();
    const inner = (() => {
      try {
        return (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
      } catch {
        return undefined;
      }
    })();
    if (typeof inner === 'string') mediaType = inner;
    if (!mediaType || ![...manifestMediaTypes, ...indexMediaTypes].includes(mediaType)) {
      throw new VisorError(
        'unsupported',
        `${where} has media type ${mediaType ?? '(none)'}, not an image manifest or index`,
      );
    }
    return { digest, mediaType, bytes };
  }

  /** The manifest as an image manifest or index, checked against the spec's schema. */
  parseManifest(result: ManifestResult, where: string): { manifest: ImageManifest } | { index: ImageIndex } {
    if (indexMediaTypes.includes(result.mediaType)) return { index: parseJson(indexSchema, result.bytes, where) };
    return { manifest: parseJson(imageManifestSchema, result.bytes, where) };
  }

  /** Digest, size and media type of a manifest, or undefined when the tag or digest is not there. */
  async headManifest(repository: string, reference: string): Promise<{ digest: string; size: number } | undefined> {
    const response = await this.#call({
      ...this.#pull(repository),
      method: 'HEAD',
      path: `/v2/${repository}/manifests/${reference}`,
      headers: { accept: [...manifestMediaTypes, ...indexMediaTypes].join(', ') },
      accept: [200, 404],
      what: `checking manifest ${reference}`,
    });
    await drain(response);
    if (response.status === 404) return undefined;
    const digest = header(response, 'docker-content-digest');
    const size = Number(header(response, 'content-length'));
    if (!digest || !digestPattern.test(digest) || !Number.isSafeInteger(size)) {
      throw new VisorError(
        'invalidResponse',
        `${this.#where(repository)}: HEAD of manifest ${reference} lacks its digest or size`,
      );
    }
    return { digest, size };
  }

  /** Puts a manifest under a tag (or its digest); returns its digest, checked against what the registry says. */
  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const response = await this.#call({
      ...this.#push(repository),
      method: 'PUT',
      path: `/v2/${repository}/manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body: bytes,
      accept: [201],
      what: `putting manifest ${reference}`,
    });
    await drain(response);
    const said = header(response, 'docker-content-digest');
    if (said !== undefined && said !== digest) {
      throw new VisorError(
        'integrity',
        `${this.#where(repository)} stored manifest ${reference} as ${said}, sent ${digest}`,
      );
    }
    return digest;
  }

  /** Deletes a manifest by digest (its tags go with it). Gone already is success. */
  async deleteManifest(repository: string, digest: string): Promise<void> {
    const response = await this.#call({
      ...this.#push(repository, ['delete']),
      method: 'DELETE',
      path: `/v2/${repository}/manifests/${digest}`,
      accept: [202, 200, 404, 405],
      what: `deleting manifest ${digest}`,
    });
    await drain(response);
    if (response.status === 405) {
      throw new VisorError('unsupported', `${this.#where(repository)} does not allow deleting manifests (HTTP 405)`);
    }
  }

  /** The blob's size when the repository has it, else undefined. */
  async headBlob(repository: string, digest: string): Promise<number | undefined> {
    const response = await this.#call({
      ...this.#pull(repository),
      method: 'HEAD',
      path: `/v2/${repository}/blobs/${digest}`,
      accept: [200, 404],
      what: `checking blob ${digest}`,
    });
    await drain(response);
    if (response.status === 404) return undefined;
    const size = Number(header(response, 'content-length'));
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new VisorError('invalidResponse', `${this.#where(repository)}: HEAD of blob ${digest} has no size`);
    }
    return size;
  }

  /**
   * A blob's bytes as a stream that ends with an error (`integrity`) instead of its last chunk
   * when they do not match `digest`, and with `invalidResponse` when their count differs from
   * `size`: whoever consumes it keeps nothing of a blob that failed. Redirects (to object
   * storage, a CDN) are followed without the registry's credentials, each hop under the
   * address rules.
   */
  async getBlob(
    repository: string,
    descriptor: { digest: string; size: number },
    signal?: AbortSignal,
  ): Promise<{ stream: Readable; size: number }> {
    const { digest, size } = descriptor;
    const where = `blob ${digest} of ${this.#where(repository)}`;
    let response = await this.#call({
      ...this.#pull(repository, signal),
      method: 'GET',
      path: `/v2/${repository}/blobs/${digest}`,
      accept: [200, 307, 302, 303, 301, 308],
      what: `reading blob ${digest}`,
    });
    for (let hop = 0; response.status >= 300; hop++) {
      const location = header(response, 'location');
      await drain(response);
      if (hop >= 5 || location === undefined)
        throw new VisorError('invalidResponse', `${where}: too many or empty redirects`);
      const from = new URL(response.config.url ?? this.#base);
      response = await this.#redirect(new URL(location, from), from, where, signal);
    }
    const length = Number(header(response, 'content-length') ?? size);
    if (length !== size) {
      await drain(response);
      throw new VisorError('integrity', `${where}: the registry sends ${length} bytes, the manifest says ${size}`);
    }
    const exact = new ExactLength(size, where);
    const check = new DigestCheck(digest, where);
    const stream = pipeline(response.data, exact, check, () => undefined) as unknown as Readable;
    return { stream, size };
  }

  /**
   * Uploads a blob unless the repository has it already (or can mount it from `mountFrom`, a
   * repository of the same registry). Small blobs go in one PUT, large ones in chunks of
   * `chunkBytes`, each a fresh ranged read of the source. The sha256 is computed on the way and
   * compared with `source.digest` before the upload is committed; the registry checks it again.
   * Returns how the blob got there.
   */
  async pushBlob(
    repository: string,
    source: BlobSource,
    options: { mountFrom?: string; signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
  ): Promise<'exists' | 'mounted' | 'uploaded'> {
    const where = `blob ${source.digest} to ${this.#where(repository)}`;
    if (!digestPattern.test(source.digest)) throw new VisorError('invalidInput', `${where}: not a sha256 digest`);
    const existing = await this.headBlob(repository, source.digest);
    if (existing === source.size) return 'exists';
    const mount = options.mountFrom ? `?mount=${source.digest}&from=${encodeURIComponent(options.mountFrom)}` : '';
    const started = await this.#call({
      ...this.#push(repository),
      method: 'POST',
      path: `/v2/${repository}/blobs/uploads/${mount}`,
      accept: [201, 202],
      what: 'starting an upload',
      signal: options.signal,
    });
    await drain(started);
    if (started.status === 201) return 'mounted';
    let location = this.#location(started, where);
    const hash = createHash('sha256');
    // Bytes before `hashed` are in the hash already: a chunk sent twice (an auth retry) counts once.
    let hashed = 0;
    const counted = async (range?: { start: number; end: number }) => {
      const stream = await source.open(range);
      let position = range?.start ?? 0;
      const tap = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          const end = position + chunk.length;
          if (end > hashed) {
            hash.update(chunk.subarray(Math.max(0, hashed - position)));
            hashed = end;
            options.onProgress?.(hashed);
          }
          position = end;
          callback(null, chunk);
        },
      });
      const length = range ? range.end - range.start + 1 : source.size;
      return pipeline(stream, new ExactLength(length, `the source of ${where}`), tap, () => undefined) as Readable;
    };
    const octets = { 'content-type': 'application/octet-stream' };
    try {
      if (source.size <= this.#chunk) {
        // One PUT: the body and the digest together, the digest checked by the registry at once.
        const url = withDigest(location, source.digest);
        const response = await this.#call({
          ...this.#push(repository),
          method: 'PUT',
          path: url,
          headers: { ...octets, 'content-length': String(source.size) },
          body: () => counted(),
          accept: [201],
          what: 'uploading a blob',
          signal: options.signal,
        });
        await drain(response);
        checkSent(hash, source, where);
      } else {
        for (let start = 0; start < source.size; start += this.#chunk) {
          const end = Math.min(start + this.#chunk, source.size) - 1;
          const response = await this.#call({
            ...this.#push(repository),
            method: 'PATCH',
            path: location,
            headers: { ...octets, 'content-length': String(end - start + 1), 'content-range': `${start}-${end}` },
            body: () => counted({ start, end }),
            accept: [202],
            what: `uploading bytes ${start}-${end}`,
            signal: options.signal,
          });
          await drain(response);
          location = this.#location(response, where);
        }
        // Compared before the registry commits anything: a source that lied leaves no blob behind.
        checkSent(hash, source, where);
        const response = await this.#call({
          ...this.#push(repository),
          method: 'PUT',
          path: withDigest(location, source.digest),
          headers: { ...octets, 'content-length': '0' },
          body: Buffer.alloc(0),
          accept: [201],
          what: 'completing a chunked upload',
          signal: options.signal,
        });
        await drain(response);
      }
    } catch (error) {
      await this.#call({
        ...this.#push(repository),
        method: 'DELETE',
        path: location,
        accept: [204, 404, 400, 405],
        what: 'cancelling an upload',
      }).then(drain, () => undefined);
      throw error;
    }
    const stored = await this.headBlob(repository, source.digest);
    if (stored !== source.size) {
      throw new VisorError(
        'integrity',
        `${where}: the registry holds ${stored ?? 'no'} bytes, ${source.size} were sent`,
      );
    }
    return 'uploaded';
  }

  /** Manifests that name `digest` as their subject (the referrers API; an empty list where the registry lacks it). */
  async referrers(repository: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    const filter = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
    const response = await this.#call({
      ...this.#pull(repository),
      method: 'GET',
      path: `/v2/${repository}/referrers/${digest}${filter}`,
      accept: [200, 404],
      what: `listing referrers of ${digest}`,
    });
    if (response.status === 404) {
      await drain(response);
      return [];
    }
    const body = await readCapped(response, this.#maxManifest, `the referrers of ${digest}`);
    const index = parseJson(indexSchema, body, `the referrers of ${digest}`);
    return index.manifests.filter((m) => !artifactType || m.artifactType === artifactType);
  }

  async close(): Promise<void> {
    for (const agent of [...this.#agents, ...(this.#guarded ?? [])]) agent.destroy();
  }

  #where(repository: string): string {
    return `${this.registry}/${repository}`;
  }

  #pull(repository: string, signal?: AbortSignal) {
    return { repository, actions: ['pull'], signal };
  }

  #push(repository: string, extra: string[] = []) {
    return { repository, actions: ['pull', 'push', ...extra] };
  }

  #location(response: AxiosResponse, where: string): string {
    const location = header(response, 'location');
    if (!location) throw new VisorError('invalidResponse', `${where}: the registry gave no upload location`);
    const url = new URL(location, this.#base);
    // An upload URL on another host would get the blob and the credentials: refused.
    if (url.host !== new URL(this.#base).host) {
      throw new VisorError('invalidResponse', `${where}: the registry moves the upload to another host (${url.host})`);
    }
    return url.href;
  }

  /** One call, with the auth challenge answered (once) when the registry asks for it. */
  async #call(call: Call): Promise<AxiosResponse<Readable>> {
    const scope = call.repository ? `${call.repository}:${(call.actions ?? ['pull']).join(',')}` : '';
    let response = await this.#send(call, this.#auth.get(scope) ?? this.#auth.get(''));
    if (response.status === 401) {
      // A body stream the registry did not read: let go of its source before opening it again.
      (response.config.data as Readable | undefined)?.destroy?.();
      const challenge = parseChallenge(header(response, 'www-authenticate') ?? '');
      await drain(response);
      const authorization = await this.#answer(challenge, call);
      this.#auth.set(challenge?.scheme === 'basic' ? '' : scope, authorization);
      response = await this.#send(call, authorization);
    }
    if (call.accept.includes(response.status)) return response;
    const body = await readCapped(response, 64 * 1024, 'an error').catch(() => Buffer.alloc(0));
    throw new VisorError(
      kindOfRegistryStatus(response.status, body),
      `${call.what} at ${this.#where(call.repository ?? '')}: HTTP ${response.status}${explain(body)}`,
      { details: { status: response.status } },
    );
  }

  async #answer(challenge: ReturnType<typeof parseChallenge>, call: Call): Promise<string> {
    const denied = (why: string) =>
      new VisorError('auth', `${call.what} at ${this.#where(call.repository ?? '')}: ${why}`);
    const credentials = this.#credentials;
    if (!challenge) throw denied('the registry asks for credentials (HTTP 401) and names no scheme');
    if (challenge.scheme === 'basic') {
      if (!credentials || !('username' in credentials)) throw denied('the registry asks for a user and password');
      return basicHeader(credentials);
    }
    if (challenge.scheme !== 'bearer' || !challenge.params['realm']) {
      throw denied(`the registry asks for ${challenge.scheme} auth, which visor does not speak`);
    }
    if (credentials && 'token' in credentials) throw denied('the token given was refused');
    const realm = new URL(challenge.params['realm']);
    const registry = new URL(this.#base);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && registry.protocol === 'http:')) {
      throw denied(`the token server ${realm.origin} is not https`);
    }
    if (realm.hostname !== registry.hostname && !this.#policy.permitsHost(realm.hostname)) {
      throw denied(`the token server ${realm.origin} is on a private or reserved address`);
    }
    const scopes = new Set<string>();
    if (challenge.params['scope']) for (const s of challenge.params['scope'].split(' ')) scopes.add(s);
    if (call.repository) scopes.add(repositoryScope(call.repository, call.actions ?? ['pull']));
    if (challenge.params['service']) realm.searchParams.set('service', challenge.params['service']);
    for (const s of scopes) realm.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (credentials && 'username' in credentials) headers['authorization'] = basicHeader(credentials);
    let response: AxiosResponse<Readable>;
    try {
      response = await this.#http.request<Readable>({ method: 'GET', url: realm.href, headers });
    } catch (error) {
      throw transportError(error, `asking the token server ${realm.origin}`);
    }
    const body = await readCapped(response, 256 * 1024, `the token server ${realm.origin}`);
    if (response.status === 401 || response.status === 403) throw denied('the token server refused the credentials');
    if (response.status !== 200) {
      throw new VisorError(kindOfStatus(response.status), `the token server ${realm.origin}: HTTP ${response.status}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      throw new VisorError('invalidResponse', `the token server ${realm.origin} answered no JSON`);
    }
    return `Bearer ${tokenFrom(json, realm.origin)}`;
  }

  async #send(call: Call, authorization: string | undefined): Promise<AxiosResponse<Readable>> {
    const url = /^https?:\/\//.test(call.path) ? call.path : `${this.#base}${call.path}`;
    const headers: Record<string, string> = { ...call.headers };
    if (authorization) headers['authorization'] = authorization;
    const data = typeof call.body === 'function' ? await call.body() : call.body;
    try {
      return await this.#http.request<Readable>({
        method: call.method,
        url,
        headers,
        ...(data !== undefined ? { data } : {}),
        ...(call.signal ? { signal: call.signal } : {}),
      });
    } catch (error) {
      (data as Readable | undefined)?.destroy?.();
      throw transportError(error, `${call.what} at ${this.#where(call.repository ?? '')}`);
    }
  }

  /** One redirect hop of a blob read: no credentials, the address rules, no https -> http. */
  async #redirect(next: URL, from: URL, where: string, signal?: AbortSignal): Promise<AxiosResponse<Readable>> {
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new VisorError('forbidden', `${where}: redirected to a ${next.protocol} URL`);
    }
    if (from.protocol === 'https:' && next.protocol === 'http:') {
      throw new VisorError('forbidden', `${where}: redirected from https to plain http`);
    }
    const sameHost = next.host === new URL(this.#base).host;
    if (!sameHost && !this.#policy.permitsHost(next.hostname)) {
      throw new VisorError('forbidden', `${where}: redirected to ${next.host}, a private, local or reserved address`);
    }
    try {
      const agent = sameHost ? {} : await this.#guardedAgent(next);
      return await this.#http.request<Readable>({
        method: 'GET',
        url: next.href,
        ...agent,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      if (isVisorError(error)) throw error;
      const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
      if (code === 'EVISORPRIVATE') {
        throw new VisorError('forbidden', `${where}: redirected to ${next.host}, which resolves to a private address`);
      }
      throw transportError(error, `${where}: following a redirect to ${next.host}`);
    }
  }

  /** Agents whose lookup refuses private addresses (DNS names of redirect targets are checked at connect time). */
  async #guardedAgent(_url: URL) {
    if (!this.#guarded) {
      const lookup = { lookup: this.#policy.lookup as never };
      const ca = this.#agents[1].options.ca;
      this.#guarded = [new http.Agent(lookup), new https.Agent({ ...lookup, ...(ca ? { ca } : {}) })];
    }
    return { httpAgent: this.#guarded[0], httpsAgent: this.#guarded[1] };
  }
}

/** Verifies the sha256 of what flows through; the last chunk is held back until it matches. */
class DigestCheck extends Transform {
  readonly #hash = createHash('sha256');
  readonly #want: string;
  readonly #what: string;
  #held: Buffer | undefined;

  constructor(digest: string, what: string) {
    super();
    this.#want = digest;
    this.#what = what;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    const out = this.#held;
    this.#held = chunk;
    callback(null, out);
  }

  override _flush(callback: TransformCallback): void {
    const got = `sha256:${this.#hash.digest('hex')}`;
    if (got !== this.#want) {
      callback(new VisorError('integrity', `${this.#what}: the bytes have digest ${got}, not ${this.#want}`));
      return;
    }
    callback(null, this.#held);
  }
}

function checkSent(hash: ReturnType<typeof createHash>, source: BlobSource, where: string): void {
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== source.digest) {
    throw new VisorError('integrity', `${where}: the source's bytes have digest ${got}, not ${source.digest}`);
  }
}

function withDigest(location: string, digest: string): string {
  const url = new URL(location);
  url.searchParams.set('digest', digest);
  return url.href;
}

function header(response: AxiosResponse, name: string): string | undefined {
  const value = response.headers[name] as unknown;
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The `next` link of a tag page (`Link: </v2/...?last=x&n=y>; rel="next"`), as a path under the registry. */
function nextLink(link: string | undefined): string | undefined {
  const match = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
  if (!match) return undefined;
  const url = new URL(match[1]!, 'http://registry.invalid');
  if (!url.pathname.startsWith('/v2/'))
    throw new VisorError('invalidResponse', `a tag page links outside the API: ${oneLine(match[1]!, 100)}`);
  return `${url.pathname}${url.search}`;
}

async function drain(response: AxiosResponse<Readable>): Promise<void> {
  const stream = response.data;
  if (!stream || typeof stream.resume !== 'function') return;
  stream.resume();
  await new Promise<void>((resolve) => {
    if (stream.readableEnded || stream.destroyed) return resolve();
    stream.once('end', resolve);
    stream.once('error', () => resolve());
    stream.once('close', resolve);
  });
}

/** A body read whole, refused (and the connection dropped) as soon as it passes `max` bytes. */
async function readCapped(response: AxiosResponse<Readable>, max: number, what: string): Promise<Buffer> {
  const declared = Number(header(response, 'content-length'));
  if (Number.isFinite(declared) && declared > max) {
    response.data.destroy();
    throw new VisorError('tooLarge', `${what} is ${declared} bytes, over the ${max}-byte cap`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response.data as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) {
      response.data.destroy();
      throw new VisorError('tooLarge', `${what} is over the ${max}-byte cap`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The registry's own error codes (the distribution spec's `errors[].code`) refine the status. */
function kindOfRegistryStatus(status: number, body: Buffer) {
  const text = body.toString('utf8');
  if (/"code"\s*:\s*"(DIGEST_INVALID|SIZE_INVALID|BLOB_UPLOAD_INVALID)"/.test(text)) return 'integrity' as const;
  if (/"code"\s*:\s*"(MANIFEST_BLOB_UNKNOWN|MANIFEST_INVALID)"/.test(text)) return 'invalidInput' as const;
  if (/"code"\s*:\s*"UNSUPPORTED"/.test(text)) return 'unsupported' as const;
  return kindOfStatus(status);
}

function explain(body: Buffer): string {
  if (body.length === 0) return '';
  try {
    const json = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const first = json.errors?.[0];
    if (first) return `: ${oneLine(`${first.code ?? ''} ${first.message ?? ''}`, 200)}`;
  } catch {
    // Not the spec's JSON: the text itself, cut short.
  }
  return `: ${oneLine(body.toString('utf8').replace(/<[^>]*>/g, ' '), 200)}`;
}

function transportError(error: unknown, what: string): VisorError {
  if (isVisorError(error)) return error;
  const e = error as { code?: string; message?: string; name?: string };
  const code = e.code ?? '';
  if (code === 'ERR_CANCELED' || e.name === 'AbortError') return new VisorError('unavailable', `${what}: aborted`);
  if (code === 'ECONNABORTED') return new VisorError('timeout', `${what}: no answer in time`);
  if (tlsTrustCodes.has(code)) {
    return new VisorError(
      'config',
      `${what}: the registry's TLS certificate is not trusted (${code}); give its CA (caBundle)`,
    );
  }
  const kind = kindOfTransportCode(code) ?? 'unavailable';
  return new VisorError(kind, `${what}: ${code || 'network error'} (${oneLine(e.message ?? '', 150)})`);
}

export { mediaTypes };
