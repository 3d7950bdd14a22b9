import type { Catalog } from '../catalog/port.js';
import type { Logger } from '../logging/logger.js';
import type { SecretRegistry } from '../logging/redact.js';
import type { IaasDriver } from '../iaas/port.js';
import type { Source } from '../source/port.js';
import type { Store } from '../store/port.js';

/**
 * A service identifier that carries the type of what it names, so that `resolve(container, id)`
 * is typed. Built on `Symbol.for` so that a plugin package with its own copy of this module
 * still names the same services.
 */
export type ServiceId<T> = symbol & { readonly __service?: T };
const id = <T>(name: string) => Symbol.for(`visor.${name}`) as ServiceId<T>;

/** What a factory is given besides its validated options. */
export interface PluginContext {
  /** The instance's name in the config: the store's, cloud's or subscription's key, `catalog` for the catalog. */
  name: string;
  /** Absolute data directory; relative paths in options are resolved against it. */
  dataDir: string;
  logger: Logger;
  /** Register credentials here as they are loaded, so that no log line ever shows them. */
  secrets: SecretRegistry;
}

export interface PluginFactory<T, Options = unknown> {
  create(options: Options, context: PluginContext): T | Promise<T>;
}
export type CatalogFactory<Options = unknown> = PluginFactory<Catalog, Options>;
export type StoreFactory<Options = unknown> = PluginFactory<Store, Options>;
export type IaasDriverFactory<Options = unknown> = PluginFactory<IaasDriver, Options>;
export type SourceFactory<Options = unknown> = PluginFactory<Source, Options>;

export const ServiceIds = {
  /** Named by plugin id: one factory per catalog plugin. */
  CatalogFactory: id<CatalogFactory>('CatalogFactory'),
  /** Named by plugin id: one factory per store plugin. */
  StoreFactory: id<StoreFactory>('StoreFactory'),
  /** Named by plugin id: one factory per IaaS adapter plugin. */
  IaasDriverFactory: id<IaasDriverFactory>('IaasDriverFactory'),
  /** Named by plugin id: one factory per image source plugin (HEPiX lists, simplestreams, OCI). */
  SourceFactory: id<SourceFactory>('SourceFactory'),
  Logger: id<Logger>('Logger'),
  Secrets: id<SecretRegistry>('Secrets'),
} as const;

export const pluginKinds = ['catalog', 'store', 'iaas', 'source'] as const;
export type PluginKind = (typeof pluginKinds)[number];

export const factoryIdByKind: Record<PluginKind, ServiceId<PluginFactory<unknown>>> = {
  catalog: ServiceIds.CatalogFactory,
  store: ServiceIds.StoreFactory,
  iaas: ServiceIds.IaasDriverFactory,
  source: ServiceIds.SourceFactory,
};
