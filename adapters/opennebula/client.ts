import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Deserializer, serializeMethodCall, XmlRpcFault, type XmlRpcValue } from '@foxglove/xmlrpc';
import type { AxiosInstance, AxiosResponse } from 'axios';
import axios from '../../core/wire/axios.js';
import { VisorError, type ErrorKind } from '../../core/errors.js';
import { Deadline } from '../../core/iaas/kit/index.js';
import { kindOfStatus } from '../../core/wire/errors.js';
import { poolFilters, type PoolFilter } from './client-pool-filters.js';
import {
  parseDatastorePool,
  parseImage,
  parseImagePool,
  parseReply,
  type OneDatastore,
  type OneImage,
} from './schema.js';

/**
 * The OpenNebula XML-RPC wire protocol (apis.md §3): one POST per call to oned's /RPC2, the
 * session string "user:password" as the first parameter, and a reply array that says success
 * or failure with one of oned's error codes. The XML-RPC envelope is written and read by
 * @foxglove/xmlrpc (sax underneath: it never expands DTD entities); HTTP is axios, which bounds
 * the response size and the time of every call.
 */

/** oned error codes (include/Request.h ErrorCode; api.rst error table). */
export const oneErrorCodes = {
  AUTHENTICATION: 0x0100,
  AUTHORIZATION: 0x0200,
  NO_EXISTS: 0x0400,
  ACTION: 0x0800,
  XML_RPC_API: 0x1000,
  INTERNAL: 0x2000,
  ALLOCATE: 0x4000,
  LOCKED: 0x8000,
  REPLICATION: 0x10000,
} as const;

/** How each oned error code reads to callers; retries follow the kind. */
export function kindForCode(code: number): ErrorKind {
  switch (code) {
    case oneErrorCodes.AUTHENTICATION:
      return 'auth';
    case oneErrorCodes.AUTHORIZATION:
      return 'forbidden';
    case oneErrorCodes.NO_EXISTS:
      return 'notFound';
    // ACTION: wrong state for the operation (in use, locked by a transfer...).
    case oneErrorCodes.ACTION:
    // ALLOCATE: the name is taken or a quota is full.
    case oneErrorCodes.ALLOCATE:
    case oneErrorCodes.LOCKED:
      return 'conflict';
    case oneErrorCodes.XML_RPC_API:
      return 'invalidInput';
    // INTERNAL: no leader, zone disabled, driver failure: worth retrying later.
    case oneErrorCodes.INTERNAL:
    case oneErrorCodes.REPLICATION:
      return 'unavailable';
    default:
      return 'invalidResponse';
  }
}

/** xmlrpc-c fault codes (xmlrpc-c/base.h) that say the request itself was unacceptable. */
function kindForFault(code: number | undefined): ErrorKind {
  if (code === -506) return 'unsupported'; // no such method: an oned without this call
  if (code === -501 || code === -502 || code === -503 || code === -509) return 'invalidInput';
  return 'invalidResponse';
}

export interface OneClientOptions {
  /** oned's XML-RPC URL, e.g. http://one:2633/RPC2. */
  endpoint: string;
  username: string;
  password: string;
  /** Deadline of one call, from sending the request to the last byte of the reply. */
  timeoutMs: number;
  /** Replies above this size are refused (a 10,000-image pool is ~25 MB). */
  maxResponseBytes: number;
}

/** Pool ownership filters of one.imagepool.info (api.rst). */
export { poolFilters, type PoolFilter } from './client-pool-filters.js';

export class OneClient {
  readonly #endpoint: string;
  readonly #session: string;
  readonly #timeoutMs: number;
  readonly #http: AxiosInstance;
  readonly #agent: HttpAgent;

  constructor(options: OneClientOptions) {
    this.#endpoint = options.endpoint;
    this.#session = `${options.username}:${options.password}`;
    this.#timeoutMs = options.timeoutMs;
    this.#agent = options.endpoint.startsWith('https:')
      ? new HttpsAgent({ keepAlive: true })
      : new HttpAgent({ keepAlive: true });
    this.#http = axios.create({
      headers: { 'Content-Type': 'text/xml' },
      responseType: 'text',
      transformResponse: [(data: unknown) => data],
      validateStatus: () => true,
      maxContentLength: options.maxResponseBytes,
      maxBodyLength: Infinity,
      maxRedirects: 0,
      httpAgent: this.#agent,
      httpsAgent: this.#agent,
    });
  }

  /** Calls `method` with the session prepended; returns the result of a successful reply. */
  async call(method: string, params: XmlRpcValue[], signal?: AbortSignal): Promise<string | number> {
    let body: string;
    try {
      body = serializeMethodCall(method, [this.#session, ...params]);
    } catch (error) {
      // The serializer refuses strings XML cannot carry (e.g. "]]>" inside a CDATA section).
      throw new VisorError(
        'invalidInput',
        `opennebula: ${method}: a parameter cannot be sent as XML-RPC: ${(error as Error).message}`,
      );
    }
    const deadline = new Deadline(this.#timeoutMs, signal);
    let response: AxiosResponse<string>;
    try {
      response = await this.#http.post<string>(this.#endpoint, body, { signal: deadline.signal });
    } catch (error) {
      // Deliberately no `cause`: axios errors carry the request body, and with it the session.
      const failure = deadline.failure(error, {
        timeout: () => `opennebula: ${method} got no reply within ${this.#timeoutMs} ms`,
        aborted: () => `opennebula: ${method} was aborted`,
        otherwise: (e) => transportError(method, e, this.#timeoutMs),
      });
      throw new VisorError(failure.kind, failure.message, { details: { method, ...failure.details } });
    } finally {
      deadline.dispose();
    }
    if (response.status !== 200) throw statusError(method, response.status);
    let value: XmlRpcValue;
    try {
      value = await new Deserializer().deserializeMethodResponse(response.data);
    } catch (error) {
      if (error instanceof XmlRpcFault) {
        throw new VisorError(
          kindForFault(error.faultCode),
          `opennebula: ${method} failed: XML-RPC fault ${error.faultCode ?? '?'}: ${error.faultString ?? ''}`,
          {
            details: { method, faultCode: error.faultCode },
          },
        );
      }
      throw new VisorError(
        'invalidResponse',
        `opennebula: the reply to ${method} is not XML-RPC: ${(error as Error).message}`,
        { details: { method } },
      );
    }
    const reply = parseReply(value, method);
    if (!reply.ok) {
      throw new VisorError(
        kindForCode(reply.code),
        `opennebula: ${method} failed: ${reply.message} (code ${reply.code})`,
        { details: { method, code: reply.code } },
      );
    }
    return reply.result;
  }

  async #text(method: string, params: XmlRpcValue[], signal?: AbortSignal): Promise<string> {
    const result = await this.call(method, params, signal);
    if (typeof result !== 'string')
      throw new VisorError(
        'invalidResponse',
        `opennebula: ${method} returned ${typeof result}, expected an XML document`,
      );
    return result;
  }

  async #id(method: string, params: XmlRpcValue[], signal?: AbortSignal): Promise<number> {
    const result = await this.call(method, params, signal);
    if (typeof result !== 'number')
      throw new VisorError('invalidResponse', `opennebula: ${method} returned ${typeof result}, expected an object id`);
    return result;
  }

  /** `start`/`end` as oned takes them: (-1, -1) the whole pool; end < -1 pages: offset `start`, page size `-end`. */
  async imagePool(filter: PoolFilter, start = -1, end = -1, signal?: AbortSignal): Promise<OneImage[]> {
    return parseImagePool(await this.#text('one.imagepool.info', [poolFilters[filter], start, end], signal));
  }

  async image(id: number, signal?: AbortSignal): Promise<OneImage> {
    return parseImage(await this.#text('one.image.info', [id], signal));
  }

  async datastorePool(signal?: AbortSignal): Promise<OneDatastore[]> {
    return parseDatastorePool(await this.#text('one.datastorepool.info', [], signal));
  }

  allocateImage(template: string, datastoreId: number, signal?: AbortSignal): Promise<number> {
    return this.#id('one.image.allocate', [template, datastoreId], signal);
  }

  /** `merge`: one.image.update type 1 (keep the attributes not named); otherwise type 0 (replace). */
  updateImage(id: number, template: string, merge: boolean, signal?: AbortSignal): Promise<number> {
    return this.#id('one.image.update', [id, template, merge ? 1 : 0], signal);
  }

  enableImage(id: number, enable: boolean, signal?: AbortSignal): Promise<number> {
    return this.#id('one.image.enable', [id, enable], signal);
  }

  renameImage(id: number, name: string, signal?: AbortSignal): Promise<number> {
    return this.#id('one.image.rename', [id, name], signal);
  }

  /** Nine values OWNER_U, OWNER_M, OWNER_A, GROUP_U ... OTHER_A; -1 leaves one as it is. */
  /** one.image.chown: -1 leaves the owner (or the group) as it is. */
  async chownImage(id: number, uid: number, gid: number, signal?: AbortSignal): Promise<number> {
    return this.#id('one.image.chown', [id, uid, gid], signal);
  }

  async chmodImage(id: number, permissions: readonly number[], signal?: AbortSignal): Promise<number> {
    if (permissions.length !== 9) throw new VisorError('internal', 'one.image.chmod takes nine permission values');
    return this.#id('one.image.chmod', [id, ...permissions], signal);
  }

  deleteImage(id: number, signal?: AbortSignal): Promise<number> {
    return this.#id('one.image.delete', [id], signal);
  }

  close(): void {
    this.#agent.destroy();
  }
}

function transportError(method: string, error: unknown, timeoutMs: number): VisorError {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message ?? String(error);
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') {
    return new VisorError('timeout', `opennebula: ${method} got no reply within ${timeoutMs} ms`, {
      details: { method },
    });
  }
  if (code === 'ERR_CANCELED')
    return new VisorError('unavailable', `opennebula: ${method} was aborted`, { details: { method } });
  if (/maxContentLength/.test(message)) {
    return new VisorError('invalidResponse', `opennebula: the reply to ${method} is larger than the configured limit`, {
      details: { method },
    });
  }
  return new VisorError('unavailable', `opennebula: ${method} failed: ${code ?? message}`, {
    details: { method, code },
  });
}

function statusError(method: string, status: number): VisorError {
  // A missing XML-RPC endpoint is a wrong URL in the config, never a missing image.
  const kind = status === 404 ? 'config' : kindOfStatus(status);
  return new VisorError(kind, `opennebula: ${method} failed: HTTP ${status}`, { details: { method, status } });
}
