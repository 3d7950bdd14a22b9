import type { Catalog } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import type { Placement } from './placements.js';

/** Runs looked back through for the last real (not dry) run of a target. */
const lookBack = 20;

/**
 * The catalog images whose copy in `target` failed: the failed tasks of its last run, and the
 * images its placements still record as failed (a failure an earlier run left and none fixed).
 * With `imageId`, only that image — a conflict when it has nothing failed there. Tasks on
 * cloud-side images (a retirement, a cleanup) carry no catalog image: the next full run retries them.
 */
export async function failedImages(catalog: Catalog, target: string, imageId?: string): Promise<Set<string>> {
  const out = new Set<string>();
  const runs = await catalog.runs.list({ target, limit: lookBack });
  const last = runs.find((r) => !r.dryRun && r.status !== 'running');
  for (const action of last?.actions ?? []) if (action.result === 'failed' && action.imageId) out.add(action.imageId);
  for (const [, placement] of await catalog.state.list<Placement>(`placement:${target}:`)) {
    if (placement.status === 'failed') out.add(placement.imageId);
  }
  if (imageId === undefined) {
    if (out.size === 0) throw new VisorError('conflict', `nothing failed in ${target}'s last run: nothing to retry`);
    return out;
  }
  if (!out.has(imageId)) throw new VisorError('conflict', `image ${imageId} has nothing failed in ${target} to retry`);
  return new Set([imageId]);
}
