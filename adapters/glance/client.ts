import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import type { AxiosInstance, AxiosRequestConfig, AxiosResponse, Method } from 'axios';
import axios, { isAxiosError } from '../../core/wire/axios.js';
import { VisorError } from '../../core/errors.js';
import type { ByteRange } from '../../core/store/port.js';
import { httpError } from '../../core/wire/http.js';
import type { KeystoneSession } from './client-keystone.js';
import type { PatchOperation } from './mapper.js';
import {
  glanceImageSchema,
  glanceImagesPageSchema,
  glanceImageTasksSchema,
  glanceImportInfoSchema,
  glanceMemberSchema,
  glanceMembersSchema,
  parsePayload,
  type GlanceImage,
  type GlanceMember,
} from './schema.js';

export interface GlanceClientOptions {
  session: KeystoneSession;
  httpAgent?: HttpAgent;
  httpsAgent?: HttpsAgent;
  /** Socket inactivity limit per request (a long upload is fine as long as bytes keep flowing). */
  timeoutMs: number;
}

export type ImportMethod = 'glance-direct' | 'web-download';

interface SendOptions {
  /** Opens the body afresh: a request retried after a 401 cannot reuse a consumed stream. */
  body?: () => Promise<Readable> | unknown;
  contentType?: string;
  headers?: Record<string, string>;
  params?: Record<string, string | number | boolean>;
  signal?: AbortSignal | undefined;
  stream?: boolean;
  accept?: (status: number) => boolean;
}

/**
 * Glance Image API v2 over axios: one method per native call, responses validated, failures
 * mapped to error kinds. Every request asks for JSON (`Accept: application/json`), because
 * Glance renders errors as HTML otherwise; HTML bodies are tolerated all the same.
 */
export class GlanceClient {
  readonly #session: KeystoneSession;
  readonly #http: AxiosInstance;

  constructor(options: GlanceClientOptions) {
    this.#session = options.session;
    this.#http = axios.create({
      timeout: options.timeoutMs,
      // maxRedirects 0 = Node's own http, not follow-redirects: the latter keeps a copy of every
      // request body byte in memory (to replay it on a redirect), i.e. the whole image.
      maxRedirects: 0,
      maxBodyLength: Infinity,
      maxContentLength: Infinity,
      ...(options.httpAgent ? { httpAgent: options.httpAgent } : {}),
      ...(options.httpsAgent ? { httpsAgent: options.httpsAgent } : {}),
    });
  }

  async createImage(body: Record<string, unknown>, signal?: AbortSignal): Promise<GlanceImage> {
    const what = `Glance: creating image "${String(body['name'])}"`;
    const response = await this.#send(what, 'POST', '/v2/images', {
      body: () => body,
      contentType: 'application/json',
      signal,
      accept: (s) => s === 201 || s === 200,
    });
    return parsePayload(glanceImageSchema, response.data, what);
  }

  async getImage(id: string, signal?: AbortSignal): Promise<GlanceImage> {
    const what = `Glance: reading image ${id}`;
    const response = await this.#send(what, 'GET', `/v2/images/${encodeURIComponent(id)}`, { signal });
    return parsePayload(glanceImageSchema, response.data, what);
  }

  /** One page of GET /v2/images; `next` is the query of the following page, if any. */
  async listPage(
    query: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<{ images: GlanceImage[]; next?: Record<string, string> }> {
    const what = 'Glance: listing images';
    const response = await this.#send(what, 'GET', '/v2/images', { params: query, signal });
    const page = parsePayload(glanceImagesPageSchema, response.data, what);
    if (page.next === undefined) return { images: page.images };
    // Glance writes `next` as /v2/images?...: its query is what matters; the endpoint may have a path prefix.
    const next = Object.fromEntries(new URL(page.next, 'http://glance.invalid').searchParams);
    if (next['marker'] === undefined || next['marker'] === query['marker']) {
      throw new VisorError('invalidResponse', `${what}: the "next" link does not advance (${page.next})`);
    }
    return { images: page.images, next };
  }

  /** GET /v2/images/{id}/members (the owner's view: every member, whatever its status). */
  async listMembers(id: string, signal?: AbortSignal): Promise<GlanceMember[]> {
    const what = `Glance: reading the members of image ${id}`;
    const response = await this.#send(what, 'GET', `/v2/images/${encodeURIComponent(id)}/members`, { signal });
    return parsePayload(glanceMembersSchema, response.data, what).members;
  }

  /** POST /v2/images/{id}/members: the member starts `pending` (Glance refuses unless the image is shared). */
  async addMember(id: string, project: string, signal?: AbortSignal): Promise<GlanceMember> {
    const what = `Glance: sharing image ${id} with project ${project}`;
    const path = `/v2/images/${encodeURIComponent(id)}/members`;
    const body = () => ({ member: project });
    const response = await this.#send(what, 'POST', path, { body, contentType: 'application/json', signal });
    return parsePayload(glanceMemberSchema, response.data, what);
  }

  async removeMember(id: string, project: string, signal?: AbortSignal): Promise<void> {
    const what = `Glance: removing project ${project} from the members of image ${id}`;
    const path = `/v2/images/${encodeURIComponent(id)}/members/${encodeURIComponent(project)}`;
    await this.#send(what, 'DELETE', path, { signal });
  }

  /** PUT /v2/images/{id}/members/{member}: only the member project itself may accept or reject. */
  async setMemberStatus(
    id: string,
    project: string,
    status: 'accepted' | 'rejected',
    signal?: AbortSignal,
  ): Promise<GlanceMember> {
    const what = `Glance: ${status === 'accepted' ? 'accepting' : 'rejecting'} image ${id} as project ${project}`;
    const path = `/v2/images/${encodeURIComponent(id)}/members/${encodeURIComponent(project)}`;
    const body = () => ({ status });
    const response = await this.#send(what, 'PUT', path, { body, contentType: 'application/json', signal });
    return parsePayload(glanceMemberSchema, response.data, what);
  }

  /** PUT /file: the bits, streamed as they are read; Glance makes the image active on success. */
  async uploadFile(id: string, open: () => Promise<Readable>, signal?: AbortSignal): Promise<void> {
    await this.#send(`Glance: uploading the data of image ${id}`, 'PUT', `/v2/images/${encodeURIComponent(id)}/file`, {
      body: open,
      contentType: 'application/octet-stream',
      signal,
    });
  }

  /** PUT /stage: the bits go to the staging area (status `uploading`) for a glance-direct import. */
  async stage(id: string, open: () => Promise<Readable>, signal?: AbortSignal): Promise<void> {
    await this.#send(`Glance: staging the data of image ${id}`, 'PUT', `/v2/images/${encodeURIComponent(id)}/stage`, {
      body: open,
      contentType: 'application/octet-stream',
      signal,
    });
  }

  /** POST /import: starts an interoperable import task (202); completion is seen by polling. */
  async importImage(id: string, method: ImportMethod, uri?: string, signal?: AbortSignal): Promise<void> {
    const body = importRequestBody(method, uri);
    await this.#send(
      `Glance: starting the ${method} import of image ${id}`,
      'POST',
      `/v2/images/${encodeURIComponent(id)}/import`,
      { body: () => body, contentType: 'application/json', signal },
    );
  }

  /** GET /v2/info/import: the import methods this cloud offers. */
  async importMethods(signal?: AbortSignal): Promise<string[]> {
    const what = 'Glance: reading the import methods';
    const response = await this.#send(what, 'GET', '/v2/info/import', { signal });
    return parsePayload(glanceImportInfoSchema, response.data, what)['import-methods'].value;
  }

  /** The message of the most recent failed import task of an image, when Glance shows tasks (API 2.12). */
  async lastTaskFailure(id: string, signal?: AbortSignal): Promise<string | undefined> {
    try {
      const response = await this.#send(
        `Glance: reading the tasks of image ${id}`,
        'GET',
        `/v2/images/${encodeURIComponent(id)}/tasks`,
        { signal },
      );
      const { tasks } = parsePayload(glanceImageTasksSchema, response.data, `Glance: reading the tasks of image ${id}`);
      const failed = tasks.filter((t) => t.status === 'failure' && t.message);
      return failed.at(-1)?.message ?? undefined;
    } catch {
      return undefined; // diagnostics only: the tasks API may be disabled by policy
    }
  }

  async patch(id: string, operations: readonly PatchOperation[], signal?: AbortSignal): Promise<GlanceImage> {
    const what = `Glance: updating image ${id}`;
    const response = await this.#send(what, 'PATCH', `/v2/images/${encodeURIComponent(id)}`, {
      body: () => operations,
      contentType: 'application/openstack-images-v2.1-json-patch',
      signal,
    });
    return parsePayload(glanceImageSchema, response.data, what);
  }

  async deactivate(id: string, signal?: AbortSignal): Promise<void> {
    await this.#send(
      `Glance: deactivating image ${id}`,
      'POST',
      `/v2/images/${encodeURIComponent(id)}/actions/deactivate`,
      { signal },
    );
  }

  async reactivate(id: string, signal?: AbortSignal): Promise<void> {
    await this.#send(
      `Glance: reactivating image ${id}`,
      'POST',
      `/v2/images/${encodeURIComponent(id)}/actions/reactivate`,
      { signal },
    );
  }

  async deleteImage(id: string, signal?: AbortSignal): Promise<void> {
    await this.#send(`Glance: deleting image ${id}`, 'DELETE', `/v2/images/${encodeURIComponent(id)}`, { signal });
  }

  /** GET /file, streamed; `size` is the number of bytes the stream delivers. */
  async download(id: string, range?: ByteRange, signal?: AbortSignal): Promise<{ stream: Readable; size?: number }> {
    const what = `Glance: downloading the data of image ${id}`;
    const headers: Record<string, string> = range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {};
    const response = await this.#send(what, 'GET', `/v2/images/${encodeURIComponent(id)}/file`, {
      headers,
      signal,
      stream: true,
      accept: (s) => s === 200 || s === 206 || s === 204,
    });
    const stream = response.data as Readable;
    if (response.status === 204) {
      stream.destroy();
      throw new VisorError(
        'conflict',
        `${what}: the image has no data (it was never uploaded, or is still being uploaded)`,
      );
    }
    if (range && response.status !== 206) {
      stream.destroy();
      throw new VisorError(
        'invalidResponse',
        `${what}: asked for bytes ${range.start}-${range.end ?? ''} but Glance sent the whole image`,
      );
    }
    const length = Number(response.headers['content-length']);
    return { stream, ...(Number.isSafeInteger(length) && length >= 0 ? { size: length } : {}) };
  }

  async #send(what: string, method: Method, path: string, options: SendOptions = {}): Promise<AxiosResponse> {
    for (let attempt = 1; ; attempt++) {
      const token = await this.#session.token();
      const endpoint = glanceBaseUrl(this.#session.endpoint(token, 'image'));
      const data = options.body ? await options.body() : undefined;
      const config: AxiosRequestConfig = {
        method,
        url: `${endpoint}${path}`,
        headers: {
          'X-Auth-Token': token.id,
          Accept: 'application/json',
          ...(options.contentType ? { 'Content-Type': options.contentType } : {}),
          ...options.headers,
        },
        ...(data !== undefined ? { data } : {}),
        ...(options.params ? { params: options.params } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.stream ? { responseType: 'stream' as const } : {}),
        validateStatus: options.accept ?? ((s) => s >= 200 && s < 300),
      };
      try {
        return await this.#http.request(config);
      } catch (error) {
        if (isAxiosError(error) && options.stream && error.response?.data)
          error.response.data = await readSmall(error.response.data as Readable);
        // A token revoked or expired early: renew once and try again.
        if (attempt === 1 && isAxiosError(error) && error.response?.status === 401) {
          (data as Readable | undefined)?.destroy?.();
          this.#session.invalidate(token.id);
          continue;
        }
        // A kept-alive connection the server closed just as we reused it: safe to repeat a read or a delete.
        if (
          attempt === 1 &&
          isAxiosError(error) &&
          error.code === 'ECONNRESET' &&
          error.response === undefined &&
          (method === 'GET' || method === 'DELETE')
        )
          continue;
        (data as Readable | undefined)?.destroy?.();
        throw refine(httpError(what, error));
      }
    }
  }
}

/** Body of POST /v2/images/{id}/import: the default store only (no `stores` / `all_stores`). */
export function importRequestBody(
  method: ImportMethod,
  uri?: string,
): { method: { name: ImportMethod; uri?: string } } {
  return { method: { name: method, ...(uri !== undefined ? { uri } : {}) } };
}

/** The catalog's image URL, without a version suffix (some clouds register `.../v2`). */
export function glanceBaseUrl(url: string): string {
  return url.replace(/\/+$/, '').replace(/\/v2(\.\d+)?$/, '');
}

/** Clearer words for the refusals an image sync meets most (wording only: the kind never depends on the text). */
function refine(error: VisorError): VisorError {
  if (error.kind === 'forbidden' && /publicize_image/.test(error.message)) {
    return new VisorError(
      'forbidden',
      `${error.message} (making an image public needs the admin role under Glance's default policy "publicize_image")`,
      { cause: error, details: error.details ?? {} },
    );
  }
  if (error.kind === 'invalidInput' && /does not pass filtering/.test(error.message)) {
    return new VisorError(
      'invalidInput',
      `${error.message} (the cloud's import_filtering_opts do not let Glance fetch from this URL)`,
      { cause: error, details: error.details ?? {} },
    );
  }
  return error;
}

/** Reads at most a few KiB of an error body that came as a stream. */
async function readSmall(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size > 8192) break;
    }
  } catch {
    // diagnostics only
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}
