import type { FastifyPluginAsync } from 'fastify';
import { VisorError } from '../../../core/errors.js';
import type { ContentPublisher } from '../../content-publisher.js';
import type { AgentDaemon } from '../../daemon.js';

export interface AgentRoutesOptions {
  daemon: AgentDaemon;
  publisher: ContentPublisher;
}

/** The agent's routes beside the image API: status, manual trigger, metrics, one-time content URLs. */
export function agentRoutes({ daemon, publisher }: AgentRoutesOptions): FastifyPluginAsync {
  return async (app) => {
    app.get('/status', async () => ({ targets: await daemon.status() }));

    app.post<{ Params: { name: string }; Querystring: { wait?: string } }>('/targets/:name/sync', async (request, reply) => {
      if (!request.caller.admin) throw new VisorError('forbidden', 'only an admin may trigger a sync');
      const run = daemon.trigger(request.params.name, 'manual');
      if (request.query.wait === 'true') return { run: await run };
      // Answer at once; the run's outcome is in /status and the run history.
      run.catch(() => undefined);
      await Promise.race([run.then(() => undefined, () => undefined), new Promise((r) => setTimeout(r, 50))]);
      return reply.code(202).send({ accepted: true, target: request.params.name });
    });

    app.get('/metrics', async (_request, reply) => reply.type(daemon.metrics.registry.contentType).send(await daemon.metrics.registry.metrics()));

    const content = (withBody: boolean) => async (request: { params: { token: string } }, reply: import('fastify').FastifyReply) => {
      const source = publisher.take(request.params.token);
      if (!source) throw new VisorError('notFound', 'no such content (the upload it was made for has ended)');
      void reply.header('content-length', String(source.size)).type('application/octet-stream');
      return withBody ? reply.send(await source.open()) : reply.send();
    };
    app.head<{ Params: { token: string } }>('/agent/content/:token', content(false));
    app.get<{ Params: { token: string } }>('/agent/content/:token', content(true));
  };
}
