import { ContainerModule } from 'inversify';
import type { Catalog } from '../catalog/port.js';
import { ensurePrivateDir } from '../fs/private-paths.js';
import type { VisorConfig } from '../config/load.js';
import type { Logger } from '../logging/logger.js';
import type { SecretRegistry } from '../logging/redact.js';
import type { Store } from '../store/port.js';
import { ServiceIds, type CatalogFactory, type PluginContext, type ServiceId, type StoreFactory } from './ids.js';

export const RuntimeIds = {
  Config: Symbol.for('visor.Config') as ServiceId<VisorConfig>,
  /** The configured catalog, opened (init) on first resolution. */
  Catalog: Symbol.for('visor.Catalog') as ServiceId<Catalog>,
  /** The configured stores by name. */
  Stores: Symbol.for('visor.Stores') as ServiceId<ReadonlyMap<string, Store>>,
} as const;

/**
 * Binds what the config asks for: each instance is built by its plugin's factory (looked up by
 * plugin id in the container, so plugins can inject what they need) and closed on unbind.
 */
export function runtimeModule(config: VisorConfig, logger: Logger, secrets: SecretRegistry): ContainerModule {
  const context = (name: string, kind: string): PluginContext => ({
    name,
    dataDir: config.dataDir,
    logger: logger.child({ [kind]: name }),
    secrets,
  });
  return new ContainerModule(({ bind }) => {
    bind(RuntimeIds.Config).toConstantValue(config);
    bind(ServiceIds.Logger).toConstantValue(logger);
    bind(ServiceIds.Secrets).toConstantValue(secrets);
    bind<Catalog>(RuntimeIds.Catalog)
      .toDynamicValue(async (ctx) => {
        // Everything under the data folder is private (catalog, credentials key, images, cache).
        ensurePrivateDir(config.dataDir);
        const factory = ctx.get<CatalogFactory>(ServiceIds.CatalogFactory, { name: config.catalog.type });
        const catalog = await factory.create(config.catalog.options, context('catalog', 'catalog'));
        await catalog.init();
        return catalog;
      })
      .inSingletonScope()
      .onDeactivation((catalog) => catalog.close());
    bind<ReadonlyMap<string, Store>>(RuntimeIds.Stores)
      .toDynamicValue(async (ctx) => {
        const stores = new Map<string, Store>();
        for (const [name, instance] of Object.entries(config.stores)) {
          const factory = ctx.get<StoreFactory>(ServiceIds.StoreFactory, { name: instance.type });
          stores.set(name, await factory.create(instance.options, context(name, 'store')));
        }
        return stores;
      })
      .inSingletonScope()
      .onDeactivation(async (stores) => {
        for (const store of stores.values()) await store.close();
      });
  });
}

/** Typed resolution for the composition root (the only caller of the container). */
export function resolveAsync<T>(container: { getAsync<U>(id: symbol): Promise<U> }, id: ServiceId<T>): Promise<T> {
  return container.getAsync<T>(id);
}
