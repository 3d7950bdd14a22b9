import type { Catalog } from '../../core/catalog/port.js';
import type { VisorConfig } from '../../core/config/load.js';
import type { VisorError } from '../../core/errors.js';
import type { ContentSource, IaasDriver } from '../../core/iaas/port.js';
import type { IaasDriverFactory, ServiceId } from '../../core/registry/ids.js';
import type { Store } from '../../core/store/port.js';
import type { ImageService } from '../service/image-service.js';
import type { SyncDeps, Target } from '../sync/runner.js';

const id = <T>(name: string) => Symbol.for(`visor.runtime.${name}`) as ServiceId<T>;

/** Makes a one-time URL serving a content source, for clouds that fetch images themselves. */
export type Publish = (source: ContentSource) => { url: string; revoke(): void };

/** Who serves one-time content URLs in this runtime: the agent's server, a bare one, or nobody. */
export interface ContentPublishing {
  publish?: Publish;
}

export interface BuiltTargets {
  targets: Map<string, Target>;
  /** Clouds whose driver could not be built (a bad CA file, ...): reported per target, never fatal for the others. */
  failed: Map<string, VisorError>;
}

/** Builds the driver of a configured cloud by its adapter plugin's factory. */
export interface CloudDriverSource {
  build(cloud: string): Promise<IaasDriver>;
}

/**
 * What the runtime's container holds, by id. Only the composition root (open-runtime.ts)
 * resolves them; everything else is handed what it needs.
 */
export const RuntimeIds = {
  Config: id<VisorConfig>('Config'),
  /** The configured catalog, opened (init) on first resolution; or the one borrowed from another runtime. */
  Catalog: id<Catalog>('Catalog'),
  /** Builds a new instance of the configured catalog with its plugin's factory, not opened. */
  CatalogBuilder: id<() => Promise<Catalog>>('CatalogBuilder'),
  /** The configured stores by name. */
  Stores: id<ReadonlyMap<string, Store>>('Stores'),
  /** Where new images go: the store the catalog's runtime was configured with. */
  DefaultStore: id<string>('DefaultStore'),
  /** Every IaaS adapter's factory, by plugin id. */
  AdapterFactories: id<ReadonlyMap<string, IaasDriverFactory>>('AdapterFactories'),
  CloudDrivers: id<CloudDriverSource>('CloudDrivers'),
  /** One driver per configured cloud (or the one cloud asked for), closed with the runtime. */
  Targets: id<BuiltTargets>('Targets'),
  ContentPublishing: id<ContentPublishing>('ContentPublishing'),
  SyncDeps: id<SyncDeps>('SyncDeps'),
  ImageService: id<ImageService>('ImageService'),
} as const;
