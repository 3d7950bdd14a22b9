import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { toVisorError, type VisorError } from '../core/errors.js';
import type { IaasDriver } from '../core/iaas/port.js';
import type { Composition } from './compose.js';
import type { Rival } from './sync/planner.js';
import type { Target } from './sync/runner.js';

/** The agent's id: the configured one, or this host's name (letters, digits, . _ -). */
export function agentIdOf(composition: Composition): string {
  return composition.config.agent.id ?? (hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64) || 'visor-agent');
}

/** This process, as a lease holder: two processes of one agent must not share a lease either. */
export function instanceIdOf(agentId: string): string {
  return `${agentId}/${process.pid}/${randomBytes(3).toString('hex')}`;
}

export function cacheDirOf(composition: Composition): string {
  const dir = composition.config.agent.cacheDir;
  return dir === undefined ? resolve(composition.config.dataDir, 'cache') : isAbsolute(dir) ? dir : resolve(composition.config.dataDir, dir);
}

export interface BuiltTargets {
  targets: Map<string, Target>;
  /** Clouds whose driver could not be built (a bad CA file, ...): reported per target, never fatal for the others. */
  failed: Map<string, VisorError>;
}

/** One driver per configured cloud, each built by its adapter plugin's factory. */
export async function buildTargets(composition: Composition, only?: string): Promise<BuiltTargets> {
  const targets = new Map<string, Target>();
  const failed = new Map<string, VisorError>();
  for (const [name, cloud] of Object.entries(composition.config.clouds)) {
    if (only !== undefined && name !== only) continue;
    try {
      const driver = await buildDriver(composition, name);
      targets.set(name, { name, adapter: cloud.adapter, policy: cloud.sync, driver });
    } catch (error) {
      failed.set(name, toVisorError(error));
    }
  }
  return { targets, failed };
}

async function buildDriver(composition: Composition, name: string): Promise<IaasDriver> {
  const cloud = composition.config.clouds[name]!;
  const factory = composition.registry.factory('iaas', cloud.adapter);
  return (await factory.create(cloud.options, {
    name,
    dataDir: composition.config.dataDir,
    logger: composition.logger.child({ cloud: name }),
    secrets: composition.secrets,
  })) as IaasDriver;
}

/**
 * For SyncDeps.rivals: the other configured targets whose driver lists the same images as the
 * given one (equal `scope()`), disabled ones included — any of them may have made an image of
 * the older marker scheme. A target whose scope cannot be told (no `scope()`, its driver cannot
 * be built, the cloud does not answer) counts as a rival: that only ever leaves such an image
 * alone. Drivers of targets this session did not build are built for the question and closed.
 */
export function rivalFinder(
  composition: Composition,
  built: BuiltTargets,
): (target: Target, signal?: AbortSignal) => Promise<Rival[]> {
  const scopes = new Map<string, Promise<string | undefined>>();
  const scopeOf = (name: string, signal?: AbortSignal): Promise<string | undefined> => {
    let scope = scopes.get(name);
    if (!scope) {
      scope = (async () => {
        const existing = built.targets.get(name)?.driver;
        const driver = existing ?? (await buildDriver(composition, name));
        try {
          return await driver.scope?.(signal ? { signal } : {});
        } finally {
          if (!existing) await driver.close().catch(() => undefined);
        }
      })().catch((error: unknown) => {
        const why = toVisorError(error);
        const message = 'cannot tell which images a cloud lists; it counts as seeing them all';
        composition.logger.warn(message, { target: name, error: why });
        scopes.delete(name);
        return undefined;
      });
      scopes.set(name, scope);
    }
    return scope;
  };
  return async (target, signal) => {
    const own = await scopeOf(target.name, signal);
    const rivals: Rival[] = [];
    for (const [name, cloud] of Object.entries(composition.config.clouds)) {
      if (name === target.name || cloud.adapter !== target.adapter) continue;
      const scope = own === undefined ? undefined : await scopeOf(name, signal);
      if (own === undefined || scope === undefined || scope === own) rivals.push({ name, policy: cloud.sync });
    }
    return rivals;
  };
}

export async function closeTargets(built: BuiltTargets): Promise<void> {
  await Promise.all([...built.targets.values()].map((t) => t.driver.close().catch(() => undefined)));
}
