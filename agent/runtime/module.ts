import { ContainerModule } from 'inversify';
import type { Catalog } from '../../core/catalog/port.js';
import type { VisorConfig } from '../../core/config/load.js';
import { ensurePrivateDir } from '../../core/fs/private-paths.js';
import type { Logger } from '../../core/logging/logger.js';
import type { SecretRegistry } from '../../core/logging/redact.js';
import {
  type CatalogFactory,
  type IaasDriverFactory,
  type PluginContext,
  type ServiceId,
  ServiceIds,
  type StoreFactory,
} from '../../core/registry/ids.js';
import type { Store } from '../../core/store/port.js';
import { startContentServer } from '../content-server.js';
import { ImageService } from '../service/image-service.js';
import { CloudDrivers } from './cloud-drivers.js';
import {
  type BuiltTargets,
  type CloudDriverSource,
  type ContentPublishing,
  type Publish,
  RuntimeIds,
} from './services.js';
import { RuntimeSyncDeps } from './sync-deps.js';
import { buildTargets, closeTargets } from './targets.js';

/** Where a runtime's catalog and stores come from when it does not open its own. */
export interface BorrowedStorage {
  readonly config: VisorConfig;
  catalog(): Promise<Catalog>;
  stores(): Promise<ReadonlyMap<string, Store>>;
}

export interface RuntimeModuleOptions {
  config: VisorConfig;
  logger: Logger;
  secrets: SecretRegistry;
  /** Ids of the registered IaaS adapter plugins (their factories are bound by the plugins' modules). */
  adapterIds: readonly string[];
  /** Build the driver of this cloud only. */
  only?: string | undefined;
  /** Another runtime's catalog and stores (the agent's reload): used, never closed, by this one. */
  storage?: BorrowedStorage | undefined;
  /** Serves the content URLs (the agent's API server). */
  publish?: Publish | undefined;
  /** Without `publish`: start a bare content server when a cloud fetches images by URL. */
  serveContent?: boolean | undefined;
}

/**
 * Every binding of a runtime, besides the plugins' own: the instances the config asks for,
 * each built by its plugin's factory (looked up by plugin id), and closed on unbind.
 */
export function runtimeModule(options: RuntimeModuleOptions): ContainerModule {
  const { config, logger, secrets, storage } = options;
  const context = (name: string, kind: string): PluginContext => ({
    name,
    dataDir: config.dataDir,
    logger: logger.child({ [kind]: name }),
    secrets,
  });
  return new ContainerModule((module) => {
    // Typed by the id: the container's own bind() cannot tell a symbol's service type.
    const bind = <T>(id: ServiceId<T>) => module.bind<T>(id);
    bind(RuntimeIds.Config).toConstantValue(config);
    bind(ServiceIds.Logger).toConstantValue(logger);
    bind(ServiceIds.Secrets).toConstantValue(secrets);

    if (storage) {
      bind(RuntimeIds.Catalog).toDynamicValue(() => storage.catalog());
      bind(RuntimeIds.Stores).toDynamicValue(() => storage.stores());
      bind(RuntimeIds.DefaultStore).toConstantValue(storage.config.defaultStore);
    } else {
      bind(RuntimeIds.Catalog)
        .toResolvedValue(
          async (build: () => Promise<Catalog>) => {
            const catalog = await build();
            await catalog.init();
            return catalog;
          },
          [RuntimeIds.CatalogBuilder],
        )
        .onDeactivation((catalog: Catalog) => catalog.close());
      bind(RuntimeIds.Stores)
        .toDynamicValue(async (ctx) => {
          const stores = new Map<string, Store>();
          for (const [name, instance] of Object.entries(config.stores)) {
            const factory = ctx.get<StoreFactory>(ServiceIds.StoreFactory, { name: instance.type });
            stores.set(name, await factory.create(instance.options, context(name, 'store')));
          }
          return stores;
        })
        .onDeactivation(async (stores) => {
          for (const store of stores.values()) await store.close();
        });
      bind(RuntimeIds.DefaultStore).toConstantValue(config.defaultStore);
    }

    // Not owned by the runtime: whoever builds a catalog this way closes it.
    bind(RuntimeIds.CatalogBuilder).toDynamicValue((ctx) => {
      const factory = ctx.get<CatalogFactory>(ServiceIds.CatalogFactory, { name: config.catalog.type });
      return async () => {
        // Everything under the data folder is private (catalog, credentials key, images, cache).
        ensurePrivateDir(config.dataDir);
        return factory.create(config.catalog.options, context('catalog', 'catalog'));
      };
    });
    bind(RuntimeIds.AdapterFactories).toDynamicValue(
      (ctx) =>
        new Map(
          options.adapterIds.map((id) => [id, ctx.get<IaasDriverFactory>(ServiceIds.IaasDriverFactory, { name: id })]),
        ),
    );
    bind(RuntimeIds.CloudDrivers).to(CloudDrivers);
    bind(RuntimeIds.Targets)
      .toResolvedValue(
        (drivers: CloudDriverSource) => buildTargets(config, drivers, options.only),
        [RuntimeIds.CloudDrivers],
      )
      .onDeactivation((built: BuiltTargets) => closeTargets(built));

    if (options.publish) {
      bind(RuntimeIds.ContentPublishing).toConstantValue({ publish: options.publish });
    } else if (options.serveContent) {
      // Clouds that fetch images by URL need someone serving them while the runtime lives.
      bind(RuntimeIds.ContentPublishing)
        .toResolvedValue(
          async (built: BuiltTargets): Promise<ContentPublishing & { close?(): Promise<void> }> => {
            const drivers = [...built.targets.values()].map((t) => t.driver.capabilities);
            if (!drivers.some((c) => c.importFromUrl || c.requiresUrl)) return {};
            const server = await startContentServer(config.agent.publicUrl);
            return { publish: (source) => server.publisher.publish(source), close: () => server.close() };
          },
          [RuntimeIds.Targets],
        )
        .onDeactivation(async (publishing: ContentPublishing & { close?(): Promise<void> }) => {
          await publishing.close?.();
        });
    } else {
      bind(RuntimeIds.ContentPublishing).toConstantValue({});
    }

    bind(RuntimeIds.SyncDeps).to(RuntimeSyncDeps);
    bind(RuntimeIds.ImageService).toResolvedValue(
      (catalog: Catalog, stores: ReadonlyMap<string, Store>, defaultStore: string) =>
        new ImageService({
          catalog,
          stores,
          defaultStore,
          logger: logger.child({ component: 'images' }),
          limits: { maxImageSize: config.server.maxImageSize, quota: config.server.quota },
        }),
      [RuntimeIds.Catalog, RuntimeIds.Stores, RuntimeIds.DefaultStore],
    );
  });
}
