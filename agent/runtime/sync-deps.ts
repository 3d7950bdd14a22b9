import 'reflect-metadata';
import { inject, injectable } from 'inversify';
import type { Catalog } from '../../core/catalog/port.js';
import type { VisorConfig } from '../../core/config/load.js';
import type { Logger } from '../../core/logging/logger.js';
import { ServiceIds } from '../../core/registry/ids.js';
import type { Store } from '../../core/store/port.js';
import { Limiter } from '../sync/limiter.js';
import { storeLimitsOf, type TransferLimits } from '../sync/transfer-limits.js';
import type { Rival } from '../sync/planner.js';
import type { SyncDeps, Target } from '../sync/runner.js';
import {
  type BuiltTargets,
  type CloudDriverSource,
  type ContentPublishing,
  type Publish,
  RuntimeIds,
} from './services.js';
import { agentIdOf, cacheDirOf, instanceIdOf, rivalFinder } from './targets.js';

/**
 * What every sync run of a runtime shares, assembled in this one place from the config and
 * the runtime's catalog, stores, drivers and content publishing — for `visor sync`, `visor
 * migrate` and the agent alike.
 */
@injectable()
export class RuntimeSyncDeps implements SyncDeps {
  readonly catalog: Catalog;
  readonly stores: ReadonlyMap<string, Store>;
  readonly defaultStore: string;
  readonly cacheDir: string;
  readonly agentId: string;
  readonly instanceId: string;
  readonly limiter: Limiter;
  readonly storeLimits: ReadonlyMap<string, TransferLimits>;
  readonly logger: Logger;
  readonly leaseMs: number;
  readonly keepRuns: number;
  readonly rivals: (target: Target, signal?: AbortSignal) => Promise<Rival[]>;
  readonly publish?: Publish;

  constructor(
    @inject(RuntimeIds.Config) config: VisorConfig,
    @inject(RuntimeIds.Catalog) catalog: Catalog,
    @inject(RuntimeIds.Stores) stores: ReadonlyMap<string, Store>,
    @inject(RuntimeIds.DefaultStore) defaultStore: string,
    @inject(ServiceIds.Logger) logger: Logger,
    @inject(RuntimeIds.Targets) built: BuiltTargets,
    @inject(RuntimeIds.CloudDrivers) drivers: CloudDriverSource,
    @inject(RuntimeIds.ContentPublishing) publishing: ContentPublishing,
  ) {
    this.catalog = catalog;
    this.stores = stores;
    this.defaultStore = defaultStore;
    this.cacheDir = cacheDirOf(config);
    this.agentId = agentIdOf(config);
    this.instanceId = instanceIdOf(this.agentId);
    // With one cloud there is nobody to leave a slot for.
    const shared = Object.keys(config.clouds).length > 1;
    this.limiter = new Limiter(config.agent.concurrency, { shared });
    this.storeLimits = storeLimitsOf(config.stores, shared);
    this.logger = logger.child({ component: 'sync', agent: this.agentId });
    this.leaseMs = config.agent.leaseSeconds * 1000;
    this.keepRuns = config.agent.keepRuns;
    this.rivals = rivalFinder(config, logger, built, drivers);
    if (publishing.publish) this.publish = publishing.publish;
  }
}
