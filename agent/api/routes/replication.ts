import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { VisorError } from '../../../core/errors.js';
import { uuidPattern } from '../../../core/image/schema.js';
import type { ImageService } from '../../service/image-service.js';
import { type CloudPlacement, whereIs } from '../../sync/placements.js';
import type { Transfer } from '../../sync/transfers.js';
import { RunView, type RunSummary } from '../run-view.js';
import { queryFromWire } from '../wire.js';

/** One configured cloud as the API shows it. */
export interface CloudSummary {
  name: string;
  adapter: string;
  enabled: boolean;
  schedule?: string;
  /** Only known to a running agent. */
  running?: boolean;
  nextRun?: string;
  /** While a run goes on: its actions in flight, with the bytes sent so far. */
  transfers?: Transfer[];
  lastRun?: RunSummary;
  /** The cloud cannot sync until its configuration is fixed (admins only). */
  error?: string;
}

export interface ReplicationRoutesOptions {
  service: ImageService;
  /** The configured clouds, with what the server knows of their runs. */
  clouds: () => Promise<CloudSummary[]>;
}

const targetPattern = /^[a-z][a-z0-9_-]{0,62}$/;

/** The actions in flight that carry an image, by cloud and image: what a running agent is doing right now. */
export function liveByPlacement(clouds: readonly CloudSummary[]): Map<string, Transfer> {
  const out = new Map<string, Transfer>();
  for (const cloud of clouds)
    for (const t of cloud.transfers ?? []) if (t.imageId && t.phase) out.set(`${cloud.name}\n${t.imageId}`, t);
  return out;
}

/**
 * A placement as it stands this moment: while a copy is being made, the step under way
 * (`converting` with its formats, then `uploading`) rather than the status of the last run.
 */
export function livePlacement<P extends { status: string; detail?: string }>(
  placement: P,
  transfer: Transfer | undefined,
): P {
  if (!transfer?.phase) return placement;
  const { detail: _old, ...rest } = placement;
  const detail = transfer.phaseDetail ?? `${transfer.action} ${transfer.name}`;
  return { ...rest, status: transfer.phase, detail } as P;
}
const maxRuns = 500;

function limitOf(value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d{1,6}$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new VisorError('invalidInput', `limit must be a whole number from 1 to ${max}, got "${value.slice(0, 20)}"`);
  }
  return Number(value);
}

function checkTarget(value: string): string {
  if (!targetPattern.test(value)) throw new VisorError('invalidInput', `"${value.slice(0, 70)}" is not a cloud name`);
  return value;
}

/**
 * The replication read side: sync runs (with their tasks), where each image stands in each
 * cloud, and the configured clouds. Every answer is what the caller may see: images they
 * cannot see do not appear, not even in runs; cloud-side details are for admins.
 */
export function replicationRoutes(options: ReplicationRoutesOptions): FastifyPluginAsync {
  const { service } = options;
  const catalog = service.catalog;
  const visibleClouds = async (request: FastifyRequest) => {
    const clouds = await options.clouds();
    if (request.caller.admin) return clouds;
    const view = new RunView(catalog, request.caller);
    const out: CloudSummary[] = [];
    for (const { error: _hidden, lastRun, transfers, ...cloud } of clouds) {
      const run = lastRun ? await catalog.runs.get(lastRun.id) : undefined;
      const visible: Transfer[] = [];
      for (const t of transfers ?? []) if (t.imageId && (await view.canSeeImage(t.imageId))) visible.push(t);
      out.push({
        ...cloud,
        ...(run ? { lastRun: await view.summary(run) } : {}),
        ...(transfers ? { transfers: visible } : {}),
      });
    }
    return out;
  };

  return async (app) => {
    app.get<{ Querystring: { target?: string; limit?: string } }>('/runs', async (request) => {
      const target = request.query.target === undefined ? undefined : checkTarget(request.query.target);
      const limit = limitOf(request.query.limit, 50, maxRuns);
      const runs = await catalog.runs.list({ ...(target ? { target } : {}), limit });
      const view = new RunView(catalog, request.caller);
      const summaries = [];
      for (const run of runs) summaries.push(await view.summary(run));
      return { runs: summaries };
    });

    app.get<{ Params: { id: string } }>('/runs/:id', async (request) => {
      const id = request.params.id;
      const run = uuidPattern.test(id) ? await catalog.runs.get(id) : undefined;
      if (!run) throw new VisorError('notFound', `no run with id ${id.slice(0, 80)}`);
      const view = new RunView(catalog, request.caller);
      const actions = await view.actions(run);
      const summary = await view.summary(run);
      return { run: { ...summary, actions } };
    });

    app.get<{ Params: { id: string } }>('/images/:id/where', async (request) => {
      const image = await service.get(request.caller, request.params.id);
      const summaries = await options.clouds();
      const live = liveByPlacement(summaries);
      const placements = (
        await whereIs(
          catalog.state,
          summaries.map((c) => c.name),
          image.id,
        )
      ).map((p) => livePlacement(p, live.get(`${p.target}\n${image.id}`)));
      return { image: { id: image.id, name: image.name, access: image.access }, clouds: placements };
    });

    app.get('/clouds', async (request) => ({ clouds: await visibleClouds(request) }));

    // The matrix image x cloud: one page of the images the caller may see (the listing's filters,
    // sort and marker), each with its status in every cloud.
    app.get('/clouds/matrix', async (request) => {
      const params = new URLSearchParams(
        request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '',
      );
      const page = await service.list(request.caller, queryFromWire(params, 50));
      const summaries = await options.clouds();
      const live = liveByPlacement(summaries);
      const clouds = summaries.map((c) => c.name);
      const rows = [];
      for (const image of page.items) {
        const where = await whereIs(catalog.state, clouds, image.id);
        const cells: Record<string, Pick<CloudPlacement, 'status' | 'detail' | 'since'> & { nativeIds: string[] }> = {};
        for (const placement of where) {
          const w = livePlacement(placement, live.get(`${placement.target}\n${image.id}`));
          cells[w.target] = {
            status: w.status,
            ...(w.detail ? { detail: w.detail } : {}),
            ...(w.since ? { since: w.since } : {}),
            nativeIds: w.copies.map((c) => c.nativeId),
          };
        }
        rows.push({ id: image.id, name: image.name, access: image.access, status: image.status, clouds: cells });
      }
      return { clouds, images: rows, ...(page.nextMarker ? { next: page.nextMarker } : {}) };
    });
  };
}
