import type { ServerResponse } from 'node:http';
import { pipeline, type Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { VisorError } from '../../../core/errors.js';
import type { Logger } from '../../../core/logging/logger.js';
import { ExactLength } from '../../../core/transfer/exact-length.js';
import { isReceiverGone } from '../../../core/transfer/file-range-stream.js';
import type { Checksums, Image } from '../../../core/image/model.js';
import { uuidPattern } from '../../../core/image/schema.js';
import type { ByteRange } from '../../../core/store/port.js';
import type { ImageService, UploadOptions } from '../../service/image-service.js';
import { watchUploadRate, type UploadRate } from '../deadlines.js';
import { decodedLength, trailerCheck } from '../streamed-digest.js';
import {
  fromWire,
  mergeOs,
  metadataFromHeaders,
  queryFromWire,
  toBrief,
  toDetail,
  toHeaders,
  type ParsedMetadata,
} from '../wire.js';

export interface ImageRoutesOptions {
  service: ImageService;
  defaultLimit: number;
  /** An upload body that sends nothing for this long is dropped (its bytes and record removed). */
  uploadIdleMs: number;
  /** An upload slower than this is dropped. */
  uploadRate: UploadRate;
  logger: Logger;
}

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

/** VISOR's image routes. */
export const imageRoutes: FastifyPluginAsync<ImageRoutesOptions> = async (app, options) => {
  const { service, defaultLimit, uploadIdleMs, uploadRate, logger } = options;
  const uploading = { idleMs: uploadIdleMs, rate: uploadRate };
  const baseUrl = (request: FastifyRequest) => `${request.protocol}://${request.host}`;

  const listing = (detailed: boolean) => async (request: FastifyRequest, reply: FastifyReply) => {
    const params = new URLSearchParams(
      request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '',
    );
    const page = await service.list(request.caller, queryFromWire(params, defaultLimit));
    if (page.nextMarker) {
      params.set('marker', page.nextMarker);
      void reply.header('link', `<${request.url.split('?')[0]}?${params.toString()}>; rel="next"`);
    }
    const names = detailed ? await service.userNames(page.items) : undefined;
    const view = (image: Image) =>
      detailed ? toDetail(image, baseUrl(request), request.caller.admin, names) : toBrief(image);
    return { images: page.items.map(view), ...(page.nextMarker ? { next: page.nextMarker } : {}) };
  };
  /** The detail view of one image, owner and members by name. */
  const detail = async (request: FastifyRequest, image: Image) =>
    toDetail(image, baseUrl(request), request.caller.admin, await service.userNames([image]));
  const headers = async (request: FastifyRequest, image: Image) =>
    toHeaders(image, baseUrl(request), request.caller.admin, await service.userNames([image]));

  app.get('/images', listing(false));
  app.get('/images/detail', listing(true));

  app.head('/images/:id', async (request: IdRequest, reply) => {
    const image = await service.get(request.caller, checkId(request.params.id));
    // A length is what lets a client keep the connection: without one (and without chunked
    // encoding) Node's HTTP client — undici too — cannot tell where a HEAD answer ends from its
    // headers and closes the socket, so every HEAD cost a new connection (and a TLS handshake).
    // It is the size a GET sends; an image without bits has no content to send.
    return reply
      .headers(await headers(request, image))
      .header('etag', etag(image))
      .header('content-length', String(image.size ?? 0))
      .code(200)
      .send();
  });

  app.get('/images/:id/meta', async (request: IdRequest, reply) => {
    const image = await service.get(request.caller, checkId(request.params.id));
    void reply.header('etag', etag(image));
    return { image: await detail(request, image) };
  });

  app.get('/images/:id', async (request: IdRequest, reply) => {
    const id = checkId(request.params.id);
    const image = await service.get(request.caller, id);
    const range = parseRange(request.headers.range, image.size);
    if (range === 'unsatisfiable') {
      return reply
        .code(416)
        .header('content-range', `bytes */${image.size ?? '*'}`)
        .type('application/json')
        .send({ code: 416, message: `range ${request.headers.range} is not satisfiable` });
    }
    const download = await service.download(request.caller, id, range);
    if (download.image.size !== undefined && download.size !== download.image.size) {
      download.stream.destroy();
      const said = `its store now holds ${download.size} bytes, the catalog says ${download.image.size}`;
      throw new VisorError('invalidResponse', `image ${id}: ${said}`);
    }
    void reply
      .headers(await headers(request, download.image))
      .header('etag', etag(download.image))
      .header('accept-ranges', 'bytes')
      .type('application/octet-stream');
    let length = download.size;
    if (download.range) {
      length = download.range.end - download.range.start + 1;
      const { start, end } = download.range;
      void reply.code(206).header('content-range', `bytes ${start}-${end}/${download.size}`);
    }
    void reply.header('content-length', String(length));
    let reported = false;
    const report = (error: unknown) => {
      if (reported) return;
      reported = true;
      const why = 'download cut off: the store failed or did not send the declared bytes';
      logger.error(why, { request: request.id, id, error });
    };
    if (download.send) return sendDirect(reply, download.send, report);
    // Exactly the bytes the headers announce, whatever the store sends: more would reach the
    // client as a second response on its connection. On a mismatch the connection is closed.
    const exact = new ExactLength(length, `the store of image ${id}`);
    download.stream.once('error', report);
    exact.once('error', (error) => {
      if ((error as { kind?: string }).kind === 'invalidResponse') report(error);
    });
    pipeline(download.stream, exact, () => undefined);
    return reply.send(exact);
  });

  app.post('/images', async (request, reply) => {
    const { meta, body } = readRequest(request, true);
    let image: Image;
    if (meta.location !== undefined) {
      if (body) throw new VisorError('invalidInput', 'give either a location or a file, not both');
      image = await service.reference(request.caller, draftFields(meta), meta.location, meta.store);
    } else {
      if (meta.store !== undefined) service.uploadStore(meta.store, body !== undefined);
      image = await service.register(request.caller, draftFields(meta));
      if (body) {
        try {
          const upload = uploadOptions(request, reply, meta.expected, uploading);
          const store = meta.store !== undefined ? { store: meta.store } : {};
          image = await service.upload(request.caller, image.id, body, { ...upload, ...store });
        } catch (error) {
          // The record was made for this upload only: a failed upload keeps nothing at all.
          await service.delete(request.caller, image.id).catch(() => undefined);
          throw error;
        }
      }
    }
    const created = { image: await detail(request, image) };
    return reply
      .code(201)
      .header('location', `${baseUrl(request)}/images/${image.id}`)
      .send(created);
  });

  app.put('/images/:id', async (request: IdRequest, reply) => {
    const id = checkId(request.params.id);
    const { meta, body } = readRequest(request);
    if (meta.location !== undefined)
      throw new VisorError('invalidInput', 'a location can only be given when an image is registered');
    const expectedRevision = parseIfMatch(request.headers['if-match']);
    let image = await service.get(request.caller, id);
    const fields = { ...meta.fields };
    // Formats sent with a file describe that file: checked against it, applied only with it.
    const formats = body ? takeFormats(fields) : undefined;
    if (Object.keys(fields).length > 0) {
      if (fields['os'] !== undefined) fields['os'] = mergeOs(image.os, fields['os'] as Record<string, string | null>);
      image = await service.update(request.caller, id, fields, expectedRevision);
    } else if (expectedRevision !== undefined && expectedRevision !== image.revision) {
      throw new VisorError('conflict', `image ${id} is at revision ${image.revision}, not ${expectedRevision}`);
    }
    if (body) {
      const options = uploadOptions(request, reply, meta.expected, uploading);
      image = await service.upload(request.caller, id, body, { ...options, ...(formats ? { formats } : {}) });
    }
    return { image: await detail(request, image) };
  });

  app.delete('/images/:id', async (request: IdRequest) => {
    const image = await service.delete(request.caller, checkId(request.params.id));
    return { image: await detail(request, image) };
  });
};

/**
 * Metadata from the JSON body ({"image": {...}} or the object itself) or from x-image-meta-* headers, plus the upload
 * body.
 */
function readRequest(request: FastifyRequest, creating = false): { meta: ParsedMetadata; body: Readable | undefined } {
  const type = request.headers['content-type']?.split(';')[0]?.trim();
  const fromHeaders = metadataFromHeaders(request.headers);
  if (type === 'application/octet-stream') {
    const length = request.headers['content-length'];
    const hasBody = length === undefined ? request.headers['transfer-encoding'] !== undefined : length !== '0';
    return { meta: fromWire(fromHeaders, true, creating), body: hasBody ? (request.body as Readable) : undefined };
  }
  const raw = request.body;
  if (raw === undefined || raw === null) return { meta: fromWire(fromHeaders, true, creating), body: undefined };
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new VisorError('invalidInput', 'the JSON body must be an object: {"image": {...}}');
  const object = raw as Record<string, unknown>;
  const inner = 'image' in object ? object['image'] : object;
  if (inner === null || typeof inner !== 'object' || Array.isArray(inner))
    throw new VisorError('invalidInput', '"image" must be an object of metadata');
  if (Object.keys(fromHeaders).length > 0)
    throw new VisorError(
      'invalidInput',
      'send metadata either in the JSON body or in x-image-meta-* headers, not both',
    );
  return { meta: fromWire(inner as Record<string, unknown>, false, creating), body: undefined };
}

/** Takes the format fields out of `fields` (undefined when there are none). */
function takeFormats(fields: Record<string, unknown>): UploadOptions['formats'] {
  const formats: Record<string, unknown> = {};
  for (const key of ['diskFormat', 'containerFormat']) {
    if (!(key in fields)) continue;
    formats[key] = fields[key];
    delete fields[key];
  }
  return Object.keys(formats).length > 0 ? (formats as UploadOptions['formats']) : undefined;
}

/** Fields for a new image: OS keys folded into one object, cleared values dropped. */
function draftFields(meta: ParsedMetadata): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(meta.fields)) {
    if (value === null) continue;
    if (key === 'os') {
      const os = mergeOs(undefined, value as Record<string, string | null>);
      if (os) fields['os'] = os;
    } else if (key === 'properties') {
      fields['properties'] = Object.fromEntries(
        Object.entries(value as Record<string, string | null>).filter(([, v]) => v !== null),
      );
    } else fields[key] = value;
  }
  return fields;
}

function uploadOptions(
  request: FastifyRequest,
  reply: FastifyReply,
  expected: Checksums,
  limits: { idleMs: number; rate: UploadRate },
): UploadOptions {
  const controller = new AbortController();
  // A body that stops arriving (a stalled client, a chunked body that never ends) would hold the
  // upload open forever: the socket is closed after idleMs without a byte, which aborts it below.
  const socket = request.raw.socket;
  socket.setTimeout(limits.idleMs);
  request.raw.once('end', () => socket.setTimeout(0));
  // ... and so would a trickle of a byte now and then.
  watchUploadRate(request.raw, reply.raw, limits.rate);
  // A client that goes away mid-upload: stop writing at once (the store then removes what it wrote).
  request.raw.once('close', () => {
    if (!request.raw.complete) controller.abort();
  });
  const declared = { ...expected };
  const check = request.bodyCheck;
  if (check.kind === 'sha256') {
    if (declared.sha256 !== undefined && declared.sha256 !== check.sha256) {
      throw new VisorError('invalidInput', 'the declared sha256 and the signed content hash differ');
    }
    declared.sha256 = check.sha256;
  }
  const length = request.headers['content-length'];
  const size = length === undefined ? decodedLength(request.raw) : Number(length);
  return {
    ...(size !== undefined && Number.isSafeInteger(size) ? { size } : {}),
    expected: declared,
    signal: controller.signal,
    ...(check.kind === 'trailer' ? { verify: trailerCheck(request.raw, check.verify) } : {}),
  };
}

/**
 * The store writes its blocks to the socket itself (large reused buffers, no stream work per
 * chunk); Fastify steps aside, and its onResponse hook still logs the answer when it finishes.
 * Node holds the body to the Content-Length (strictContentLength): a write past it throws and
 * an end before it throws, so a store that sends more or fewer bytes than declared gets the
 * connection closed, as ExactLength does on the stream path.
 */
async function sendDirect(
  reply: FastifyReply,
  send: (destination: ServerResponse, options: { end: boolean }) => Promise<void>,
  report: (error: unknown) => void,
): Promise<FastifyReply> {
  reply.hijack();
  const response = reply.raw;
  response.strictContentLength = true;
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) response.setHeader(name, value);
  }
  response.writeHead(reply.statusCode);
  try {
    // Ended by the store right after the last byte where it can (before its file is closed).
    await send(response, { end: true });
    if (!response.writableEnded) response.end();
  } catch (error) {
    // Headers are out: all that is left is to cut the body short, which the client notices
    // (fewer bytes than Content-Length). A client that went away is no failure of ours.
    if (!isReceiverGone(error)) report(error);
    response.destroy();
  }
  return reply;
}

function checkId(id: string): string {
  if (!uuidPattern.test(id)) throw new VisorError('notFound', `no image with id ${id.slice(0, 100)}`);
  return id;
}

function etag(image: Image): string {
  return `"${image.revision}"`;
}

function parseIfMatch(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(?:W\/)?"?(\d{1,15})"?$/.exec(value.trim());
  if (!match) throw new VisorError('invalidInput', 'If-Match must be the image revision, e.g. "3"');
  return Number(match[1]);
}

/** One `bytes=` range (first-last, first-, or -suffix); several ranges are served whole. */
function parseRange(header: string | undefined, size: number | undefined): ByteRange | undefined | 'unsatisfiable' {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (size === undefined) return undefined;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}
