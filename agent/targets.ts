import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { toVisorError, type VisorError } from '../core/errors.js';
import type { IaasDriver } from '../core/iaas/port.js';
import type { Composition } from './compose.js';
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
      const factory = composition.registry.factory('iaas', cloud.adapter);
      const driver = (await factory.create(cloud.options, {
        name,
        dataDir: composition.config.dataDir,
        logger: composition.logger.child({ cloud: name }),
        secrets: composition.secrets,
      })) as IaasDriver;
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
