import type { FastifyPluginAsync } from 'fastify';
import type { RunRecord } from '../../../core/catalog/port.js';
import { VisorError } from '../../../core/errors.js';
import { uuidPattern } from '../../../core/image/schema.js';
import type { Logger } from '../../../core/logging/logger.js';
import type { ContentPublisher } from '../../content-publisher.js';
import { handleContent } from '../../content-route.js';
import { planJson } from '../../sync/plan-view.js';
import type { Plan } from '../../sync/planner.js';

/** What the routes need of the agent (the daemon implements it): no import of the daemon itself. */
export interface AgentControl {
  status(): Promise<readonly object[]>;
  trigger(name: string, trigger: 'manual'): Promise<RunRecord>;
  plan(name: string): Promise<Plan>;
  retryFailed(name: string, imageId?: string): Promise<{ images: string[]; run: Promise<RunRecord> }>;
  readonly metrics: { readonly registry: { readonly contentType: string; metrics(): Promise<string> } };
}

export interface AgentRoutesOptions {
  daemon: AgentControl;
  publisher: ContentPublisher;
  logger?: Logger;
}

/** The agent's routes beside the image API: status, manual trigger, metrics, one-time content URLs. */
export function agentRoutes({ daemon, publisher, logger }: AgentRoutesOptions): FastifyPluginAsync {
  return async (app) => {
    app.get('/status', async () => ({ targets: await daemon.status() }));

    app.post<{ Params: { name: string }; Querystring: { wait?: string } }>(
      '/targets/:name/sync',
      async (request, reply) => {
        if (!request.caller.admin) throw new VisorError('forbidden', 'only an admin may trigger a sync');
        const run = daemon.trigger(request.params.name, 'manual');
        if (request.query.wait === 'true') return { run: await run };
        // Answer at once; the run's outcome is in /status and the run history.
        run.catch(() => undefined);
        await Promise.race([
          run.then(
            () => undefined,
            () => undefined,
          ),
          new Promise((r) => setTimeout(r, 50)),
        ]);
        return reply.code(202).send({ accepted: true, target: request.params.name });
      },
    );

    // Only what failed (the last run's failed tasks, or one image there), apart from "sync now".
    app.post<{ Params: { name: string }; Querystring: { wait?: string; image?: string } }>(
      '/targets/:name/retry-failed',
      async (request, reply) => {
        if (!request.caller.admin) throw new VisorError('forbidden', 'only an admin may retry failed tasks');
        const image = request.query.image;
        if (image !== undefined && !uuidPattern.test(image)) {
          throw new VisorError('invalidInput', `image must be an image id, got "${image.slice(0, 60)}"`);
        }
        const { images, run } = await daemon.retryFailed(request.params.name, image);
        if (request.query.wait === 'true') return { images, run: await run };
        run.catch(() => undefined);
        return reply.code(202).send({ accepted: true, target: request.params.name, images });
      },
    );

    // What the next run would do (as `visor plan` shows it): admins only, as it lists the cloud.
    app.get<{ Params: { name: string } }>('/targets/:name/plan', async (request) => {
      if (!request.caller.admin) throw new VisorError('forbidden', 'only an admin may see the plan of a cloud');
      return { plan: planJson(await daemon.plan(request.params.name)) };
    });

    // The same node:http handler one-shot commands serve without Fastify; Fastify only routes to it.
    app.route({
      method: ['GET', 'HEAD'],
      url: '/agent/content/:token',
      handler: (request, reply) => {
        reply.hijack();
        handleContent(publisher, request.raw, reply.raw, logger);
      },
    });
  };
}
