import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { VisorError } from '../../../core/errors.js';
import type { DeprecateRequest } from '../../../core/image/deprecation.js';
import { deprecationStates, type Image } from '../../../core/image/model.js';
import { uuidPattern } from '../../../core/image/schema.js';
import type { ImageService } from '../../service/image-service.js';
import { toDetail } from '../wire.js';

export interface LifecycleRoutesOptions {
  service: ImageService;
}

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

/**
 * The life cycle of an image: deprecate (with a replacement and a schedule), undeprecate,
 * restore a deleted image, purge a deleted image before its time. POST with a JSON body
 * (empty for all but deprecate); each answers with the image's detail view, as VISOR's routes do.
 */
export const lifecycleRoutes: FastifyPluginAsync<LifecycleRoutesOptions> = async (app, { service }) => {
  const detail = async (request: FastifyRequest, image: Image) =>
    toDetail(image, `${request.protocol}://${request.host}`, request.caller.admin, await service.userNames([image]));

  app.post('/images/:id/deprecate', async (request: IdRequest) => {
    const image = await service.deprecate(request.caller, checkId(request.params.id), deprecateRequest(request.body));
    return { image: await detail(request, image) };
  });
  app.post('/images/:id/undeprecate', async (request: IdRequest) => {
    return { image: await detail(request, await service.undeprecate(request.caller, checkId(request.params.id))) };
  });
  app.post('/images/:id/restore', async (request: IdRequest) => {
    return { image: await detail(request, await service.restore(request.caller, checkId(request.params.id))) };
  });
  app.post('/images/:id/purge', async (request: IdRequest) => {
    return { image: await detail(request, await service.purge(request.caller, checkId(request.params.id))) };
  });
};

const bodyKeys: Record<string, keyof DeprecateRequest> = {
  state: 'state',
  replacement: 'replacement',
  obsolete_on: 'obsoleteOn',
  delete_on: 'deleteOn',
};

/** `{state?, replacement?, obsolete_on?, delete_on?}`, each text; every bad key named in one error. */
export function deprecateRequest(body: unknown): DeprecateRequest {
  const raw = body ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new VisorError('invalidInput', 'the JSON body must be an object');
  const out: DeprecateRequest = {};
  const problems: string[] = [];
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const field = bodyKeys[key];
    if (field === undefined) problems.push(`"${key.slice(0, 64)}" is not one of ${Object.keys(bodyKeys).join(', ')}`);
    else if (typeof value !== 'string' || value === '') problems.push(`${key} must be non-empty text`);
    else if (field === 'state' && !(deprecationStates as readonly string[]).includes(value)) {
      problems.push(`state must be ${deprecationStates.join(' or ')}`);
    } else if (field === 'replacement' && !uuidPattern.test(value)) problems.push('replacement must be an image id');
    else if ((field === 'obsoleteOn' || field === 'deleteOn') && Number.isNaN(Date.parse(value))) {
      problems.push(`${key} must be a date (2027-01-31) or date-time (2027-01-31T12:00:00Z)`);
    } else (out as Record<string, string>)[field] = value;
  }
  if (problems.length > 0)
    throw new VisorError('invalidInput', `invalid deprecation: ${problems.join('; ')}`, { details: { problems } });
  return out;
}

function checkId(id: string): string {
  if (!uuidPattern.test(id)) throw new VisorError('notFound', `no image with id ${id.slice(0, 100)}`);
  return id;
}
