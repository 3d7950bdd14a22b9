/**
 * visor's public API: what a plugin package or an embedding application imports from 'visor'.
 */
export { ContainerModule } from 'inversify';
export * from './errors.js';
export * from './image/model.js';
export { newImage, applyChanges, validateImage, systemClock, type Clock } from './image/image.js';
export { canTransition, lifecycleEvents, nextStatus, type LifecycleEvent } from './image/lifecycle.js';
export { resolveAttribute, knownAttributePaths, type Attribute, type FilterValue } from './image/attributes.js';
export type { Catalog, ImageRepository, ImageQuery, Page, SortDirection } from './catalog/port.js';
export { SqliteCatalog } from './catalog/sqlite/sqlite-catalog.js';
export type { MongoCatalog } from './catalog/mongodb/mongodb-catalog.js';
export type * from './store/port.js';
export type * from './iaas/port.js';
export type * from './source/port.js';
export { sourceError, sourceRefusals, refusalOf, isUnchanged } from './source/port.js';
export { MemorySource, type MemorySourceEntry } from './source/memory-source.js';
export {
  checkClaim,
  claimProblem,
  defaultMarkerKeys,
  isMarkerKey,
  markersFromAttributes,
  markersToAttributes,
  type Claim,
  type MarkerKeys,
} from './iaas/markers.js';
// The driver kit and the example adapter, for third-party adapters (see core/iaas/memory/README.md).
export * from './iaas/kit/index.js';
export {
  MemoryCloud,
  MemoryDriver,
  memoryPlugin,
  type MemoryCloudOptions,
  type MemoryDriverOptions,
} from './iaas/memory/index.js';
export {
  ServiceIds,
  pluginKinds,
  type PluginKind,
  type PluginContext,
  type PluginFactory,
  type CatalogFactory,
  type StoreFactory,
  type IaasDriverFactory,
  type SourceFactory,
  type ServiceId,
} from './registry/ids.js';
export {
  definePlugin,
  pluginIdPattern,
  type VisorPlugin,
  type PluginDefinition,
  type PluginEntry,
  type PluginPackageDefinition,
} from './registry/plugin.js';
export { PluginRegistry, type PluginInfo, type PluginSource } from './registry/registry.js';
export type { StandardSchemaV1 } from './registry/standard-schema.js';
export {
  loadConfig,
  ConfigError,
  type VisorConfig,
  type ConfigIssue,
  type CloudConfig,
  type PluginInstance,
} from './config/load.js';
export { createLogger, silentLogger, type Logger, type LogLevel } from './logging/logger.js';
export { SecretRegistry, collectSecrets } from './logging/redact.js';
export { DigestStream, verifyDigest } from './transfer/digest.js';
export { checkRange, objectKeyPattern } from './store/keys.js';
