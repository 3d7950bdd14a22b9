import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import type { VisorConfig } from '../../core/config/load.js';
import { toVisorError } from '../../core/errors.js';
import type { Logger } from '../../core/logging/logger.js';
import type { Rival } from '../sync/planner.js';
import type { Target } from '../sync/runner.js';
import type { BuiltTargets, CloudDriverSource } from './services.js';

/** The agent's id: the configured one, or this host's name (letters, digits, . _ -). */
export function agentIdOf(config: VisorConfig): string {
  return (
    config.agent.id ??
    (hostname()
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .slice(0, 64) ||
      'visor-agent')
  );
}

/** This process, as a lease holder: two processes of one agent must not share a lease either. */
export function instanceIdOf(agentId: string): string {
  return `${agentId}/${process.pid}/${randomBytes(3).toString('hex')}`;
}

export function cacheDirOf(config: VisorConfig): string {
  const dir = config.agent.cacheDir;
  if (dir === undefined) return resolve(config.dataDir, 'cache');
  return isAbsolute(dir) ? dir : resolve(config.dataDir, dir);
}

/** One driver per configured cloud (or only `only`); a cloud whose driver cannot be built is recorded, not fatal. */
export async function buildTargets(
  config: VisorConfig,
  drivers: CloudDriverSource,
  only?: string,
): Promise<BuiltTargets> {
  const targets = new Map<string, Target>();
  const failed = new Map<string, ReturnType<typeof toVisorError>>();
  for (const [name, cloud] of Object.entries(config.clouds)) {
    if (only !== undefined && name !== only) continue;
    try {
      const driver = await drivers.build(name);
      targets.set(name, { name, adapter: cloud.adapter, policy: cloud.sync, driver });
    } catch (error) {
      failed.set(name, toVisorError(error));
    }
  }
  return { targets, failed };
}

export async function closeTargets(built: BuiltTargets): Promise<void> {
  await Promise.all([...built.targets.values()].map((t) => t.driver.close().catch(() => undefined)));
}

/**
 * For SyncDeps.rivals: the other configured targets whose driver lists the same images as the
 * given one (equal `scope()`), disabled ones included — any of them may have made an image of
 * the older marker scheme. A target whose scope cannot be told (no `scope()`, its driver cannot
 * be built, the cloud does not answer) counts as a rival: that only ever leaves such an image
 * alone. Drivers of targets this runtime did not build are built for the question and closed.
 */
export function rivalFinder(
  config: VisorConfig,
  logger: Logger,
  built: BuiltTargets,
  drivers: CloudDriverSource,
): (target: Target, signal?: AbortSignal) => Promise<Rival[]> {
  const scopes = new Map<string, Promise<string | undefined>>();
  const scopeOf = (name: string, signal?: AbortSignal): Promise<string | undefined> => {
    let scope = scopes.get(name);
    if (!scope) {
      scope = (async () => {
        const existing = built.targets.get(name)?.driver;
        const driver = existing ?? (await drivers.build(name));
        try {
          return await driver.scope?.(signal ? { signal } : {});
        } finally {
          if (!existing) await driver.close().catch(() => undefined);
        }
      })().catch((error: unknown) => {
        const why = toVisorError(error);
        const message = 'cannot tell which images a cloud lists; it counts as seeing them all';
        logger.warn(message, { target: name, error: why });
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
    for (const [name, cloud] of Object.entries(config.clouds)) {
      if (name === target.name || cloud.adapter !== target.adapter) continue;
      const scope = own === undefined ? undefined : await scopeOf(name, signal);
      if (own === undefined || scope === undefined || scope === own) rivals.push({ name, policy: cloud.sync });
    }
    return rivals;
  };
}
