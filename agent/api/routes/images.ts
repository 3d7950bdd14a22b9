import type { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { VisorError } from '../../../core/errors.js';
import type { Logger } from '../../../core/logging/logger.js';
import { isReceiverGone } from '../../../core/transfer/file-range-stream.js';
import type { Checksums, Image } from '../../../core/image/model.js';
import { uuidPattern } from '../../../core/image/schema.js';
import type { ByteRange } from '../../../core/store/port.js';
import type { ImageService } from '../../service/image-service.js';
import { fromWire, mergeOs, metadataFromHeaders, queryFromWire, toBrief, toDetail, toHeaders, type ParsedMetadata } from '../wire.js';

export interface ImageRoutesOptions {
  service: ImageService;
  defaultLimit: number;
  /** An upload body that sends nothing for this long is dropped (its bytes and record removed). */
  uploadIdleMs: number;
  logger: Logger;
}

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

/** VISOR's image routes. */
export const imageRoutes: FastifyPluginAsync<ImageRoutesOptions> = async (app, options) => {
  const { service, defaultLimit, uploadIdleMs, logger } = options;
  const baseUrl = (request: FastifyRequest) => `${request.protocol}://${request.host}`;

  const listing = (view: (image: Image) => unknown) => async (request: FastifyRequest, reply: FastifyReply) => {
    const params = new URLSearchParams(request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '');
    const page = await service.list(request.caller, queryFromWire(params, defaultLimit));
    if (page.nextMarker) {
      params.set('marker', page.nextMarker);
      void reply.header('link', `<${request.url.split('?')[0]}?${params.toString()}>; rel="next"`);
    }
    return { images: page.items.map(view), ...(page.nextMarker ? { next: page.nextMarker } : {}) };
  };

  app.get('/images', listing(toBrief));
  app.get('/images/detail', async (request, reply) => listing((image) => toDetail(image, baseUrl(request), request.caller.admin))(request, reply));

  app.head('/images/:id', async (request: IdRequest, reply) => {
    const image = await service.get(request.caller, checkId(request.params.id));
    return reply.headers(toHeaders(image, baseUrl(request), request.caller.admin)).header('etag', etag(image)).code(200).send();
  });

  app.get('/images/:id/meta', async (request: IdRequest, reply) => {
    const image = await service.get(request.caller, checkId(request.params.id));
    void reply.header('etag', etag(image));
    return { image: toDetail(image, baseUrl(request), request.caller.admin) };
  });

  app.get('/images/:id', async (request: IdRequest, reply) => {
    const id = checkId(request.params.id);
    const image = await service.get(request.caller, id);
    const range = parseRange(request.headers.range, image.size);
    if (range === 'unsatisfiable') {
      return reply.code(416).header('content-range', `bytes */${image.size ?? '*'}`).type('application/json').send({ code: 416, message: `range ${request.headers.range} is not satisfiable` });
    }
    const download = await service.download(request.caller, id, range);
    void reply.headers(toHeaders(download.image, baseUrl(request), request.caller.admin)).header('etag', etag(download.image)).header('accept-ranges', 'bytes').type('application/octet-stream');
    if (download.range) {
      void reply.code(206).header('content-range', `bytes ${download.range.start}-${download.range.end}/${download.size}`).header('content-length', String(download.range.end - download.range.start + 1));
    } else {
      void reply.header('content-length', String(download.size));
    }
    if (!download.send) return reply.send(download.stream);
    // The store writes its blocks to the socket itself (large reused buffers, no stream work per
    // chunk). Fastify steps aside; its onResponse hook still logs the answer when it finishes.
    reply.hijack();
    const response = reply.raw;
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) response.setHeader(name, value);
    }
    response.writeHead(reply.statusCode);
    try {
      await download.send(response);
      response.end();
    } catch (error) {
      // Headers are out: all that is left is to cut the body short, which the client notices
      // (fewer bytes than Content-Length). A client that went away is no failure of ours.
      if (!isReceiverGone(error)) logger.error('download cut off: the store failed', { id, error });
      response.destroy();
    }
    return reply;
  });

  app.post('/images', async (request, reply) => {
    const { meta, body } = readRequest(request);
    let image: Image;
    if (meta.location !== undefined) {
      if (body) throw new VisorError('invalidInput', 'give either a location or a file, not both');
      image = await service.reference(request.caller, draftFields(meta), meta.location);
    } else {
      image = await service.register(request.caller, draftFields(meta));
      if (body) {
        try {
          image = await service.upload(request.caller, image.id, body, uploadOptions(request, meta.expected, uploadIdleMs));
        } catch (error) {
          // The record was made for this upload only: a failed upload keeps nothing at all.
          await service.delete(request.caller, image.id).catch(() => undefined);
          throw error;
        }
      }
    }
    return reply.code(201).header('location', `${baseUrl(request)}/images/${image.id}`).send({ image: toDetail(image, baseUrl(request), request.caller.admin) });
  });

  app.put('/images/:id', async (request: IdRequest) => {
    const id = checkId(request.params.id);
    const { meta, body } = readRequest(request);
    if (meta.location !== undefined) throw new VisorError('invalidInput', 'a location can only be given when an image is registered');
    const expectedRevision = parseIfMatch(request.headers['if-match']);
    let image = await service.get(request.caller, id);
    if (Object.keys(meta.fields).length > 0) {
      const fields = { ...meta.fields };
      if (fields['os'] !== undefined) fields['os'] = mergeOs(image.os, fields['os'] as Record<string, string | null>);
      image = await service.update(request.caller, id, fields, expectedRevision);
    } else if (expectedRevision !== undefined && expectedRevision !== image.revision) {
      throw new VisorError('conflict', `image ${id} is at revision ${image.revision}, not ${expectedRevision}`);
    }
    if (body) image = await service.upload(request.caller, id, body, uploadOptions(request, meta.expected, uploadIdleMs));
    return { image: toDetail(image, baseUrl(request), request.caller.admin) };
  });

  app.delete('/images/:id', async (request: IdRequest) => {
    const image = await service.delete(request.caller, checkId(request.params.id));
    return { image: toDetail(image, baseUrl(request), request.caller.admin) };
  });
};

/** Metadata from the JSON body ({"image": {...}} or the object itself) or from x-image-meta-* headers, plus the upload body. */
function readRequest(request: FastifyRequest): { meta: ParsedMetadata; body: Readable | undefined } {
  const type = request.headers['content-type']?.split(';')[0]?.trim();
  const fromHeaders = metadataFromHeaders(request.headers);
  if (type === 'application/octet-stream') {
    const length = request.headers['content-length'];
    const hasBody = length === undefined ? request.headers['transfer-encoding'] !== undefined : length !== '0';
    return { meta: fromWire(fromHeaders, true), body: hasBody ? (request.body as Readable) : undefined };
  }
  const raw = request.body;
  if (raw === undefined || raw === null) return { meta: fromWire(fromHeaders, true), body: undefined };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new VisorError('invalidInput', 'the JSON body must be an object: {"image": {...}}');
  const object = raw as Record<string, unknown>;
  const inner = 'image' in object ? object['image'] : object;
  if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) throw new VisorError('invalidInput', '"image" must be an object of metadata');
  if (Object.keys(fromHeaders).length > 0) throw new VisorError('invalidInput', 'send metadata either in the JSON body or in x-image-meta-* headers, not both');
  return { meta: fromWire(inner as Record<string, unknown>), body: undefined };
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
      fields['properties'] = Object.fromEntries(Object.entries(value as Record<string, string | null>).filter(([, v]) => v !== null));
    } else fields[key] = value;
  }
  return fields;
}

function uploadOptions(request: FastifyRequest, expected: Checksums, idleMs: number): { size?: number; expected: Checksums; signal: AbortSignal } {
  const controller = new AbortController();
  // A body that stops arriving (a stalled client, a chunked body that never ends) would hold the
  // upload open forever: the socket is closed after idleMs without a byte, which aborts it below.
  const socket = request.raw.socket;
  socket.setTimeout(idleMs);
  request.raw.once('end', () => socket.setTimeout(0));
  // A client that goes away mid-upload: stop writing at once (the store then removes what it wrote).
  request.raw.once('close', () => {
    if (!request.raw.complete) controller.abort();
  });
  const declared = { ...expected };
  if (request.signedContentHash !== undefined) {
    if (declared.sha256 !== undefined && declared.sha256 !== request.signedContentHash) {
      throw new VisorError('invalidInput', 'the declared sha256 and the signed content hash differ');
    }
    declared.sha256 = request.signedContentHash;
  }
  const length = request.headers['content-length'];
  const size = length === undefined ? undefined : Number(length);
  return { ...(size !== undefined && Number.isSafeInteger(size) ? { size } : {}), expected: declared, signal: controller.signal };
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
