import { randomUUID } from 'node:crypto';
import type { Action, Plan } from '../../agent/sync/planner.js';
import { ORIGIN_ID, ORIGIN_TARGET } from '../../agent/sync/desired.js';
import type { CloudImage, Markers } from '../../core/iaas/port.js';
import { newImage } from '../../core/image/image.js';
import type { Image } from '../../core/image/model.js';

/** The planner's model of what each action does to a cloud, as plain data: for property tests. */
export interface World {
  catalog: Image[];
  observed: CloudImage[];
  retiredSince: Map<string, string>;
}

let counter = 0;

/** The target the planner tests plan for, unless they say otherwise. */
export const defaultTarget = 'prod';

/** A copy in the cloud marked by `agent` for `target` (null: the older marker scheme, no target). */
export function cloudCopy(
  image: Image,
  agent: string,
  overrides: Partial<CloudImage> = {},
  target: string | null = defaultTarget,
): CloudImage {
  const { id: imageId, revision } = image;
  const owner = { agent, ...(target !== null ? { target } : {}) };
  const markers: Markers = { ...owner, imageId, sha256: image.checksums.sha256!, revision };
  return {
    nativeId: `native-${++counter}`,
    name: image.name,
    state: 'active',
    hidden: false,
    inUse: false,
    access: image.access,
    checksums: { ...image.checksums },
    ...(image.size !== undefined ? { size: image.size } : {}),
    markers,
    metadata: {},
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, counter)).toISOString(),
    ...overrides,
  };
}

/** Applies a plan the way a perfectly behaved cloud and executor would. */
export function apply(world: World, plan: Plan, agent: string, now: Date): World {
  const observed = world.observed.map((o) => ({ ...o, ...(o.markers ? { markers: { ...o.markers } } : {}) }));
  const catalog = [...world.catalog];
  const retiredSince = new Map(world.retiredSince);
  const find = (id: string) => observed.find((o) => o.nativeId === id)!;
  const remove = (id: string) => {
    observed.splice(observed.indexOf(find(id)), 1);
    retiredSince.delete(id);
  };
  const run = (action: Action) => {
    switch (action.kind) {
      case 'create':
      case 'replace': {
        const source = action.desired.image;
        observed.push(cloudCopy(source, agent, { name: source.name, access: source.access }, plan.target));
        if (action.kind === 'replace') action.retire.forEach(run);
        break;
      }
      case 'update':
      case 'adopt': {
        const copy = find(action.nativeId);
        const d = action.desired.image;
        copy.name = d.name;
        copy.access = d.access;
        // As the executor does: an adopted copy of the older scheme keeps the content marker of its bits.
        const sha256 = action.claim.owner === 'none' ? d.checksums.sha256! : copy.markers!.sha256;
        copy.markers = { agent, target: plan.target, imageId: d.id, sha256, revision: d.revision };
        break;
      }
      case 'retire': {
        if (action.mode === 'delete') remove(action.nativeId);
        else {
          const copy = find(action.nativeId);
          if (action.mode === 'hide') copy.hidden = true;
          else copy.state = 'disabled';
        }
        if (action.startsGrace) retiredSince.set(action.nativeId, now.toISOString());
        break;
      }
      case 'cleanup':
        remove(action.nativeId);
        break;
      case 'import': {
        const source = find(action.nativeId);
        // As the executor does: an imported image is as public as the cloud's.
        const access = source.access === 'public' ? 'public' : 'private';
        const properties = { [ORIGIN_TARGET]: plan.target, [ORIGIN_ID]: source.nativeId };
        catalog.push(newImage({ name: source.name, architecture: 'x86_64', access, properties }));
        break;
      }
    }
  };
  plan.actions.forEach(run);
  return { catalog, observed, retiredSince };
}

export function fakeSha(seed: string): string {
  return Buffer.from(seed.padEnd(32, '.')).toString('hex').slice(0, 64).padEnd(64, '0');
}

export function uniqueId(): string {
  return randomUUID();
}
