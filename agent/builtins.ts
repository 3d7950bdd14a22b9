import { eucalyptusPlugin } from '../adapters/eucalyptus/index.js';
import { glancePlugin } from '../adapters/glance/index.js';
import { nimbusPlugin } from '../adapters/nimbus/index.js';
import { openNebulaPlugin } from '../adapters/opennebula/index.js';
import { mongodbCatalogPlugin, postgresqlCatalogPlugin, sqliteCatalogPlugin } from '../core/catalog/plugins.js';
import type { VisorPlugin } from '../core/registry/plugin.js';
import { PluginRegistry } from '../core/registry/registry.js';
import { httpStorePlugin } from '../core/store/http/plugin.js';
import { fileStorePlugin, s3StorePlugin } from '../core/store/plugins.js';

/**
 * Every plugin that ships with visor. They register through exactly the same API as a
 * third-party package's; test/registry/adapters-agree.test.ts keeps adapters/ and this list
 * in agreement.
 */
export const builtinPlugins: readonly VisorPlugin[] = [
  sqliteCatalogPlugin,
  mongodbCatalogPlugin,
  postgresqlCatalogPlugin,
  fileStorePlugin,
  httpStorePlugin,
  s3StorePlugin,
  glancePlugin,
  openNebulaPlugin,
  nimbusPlugin,
  eucalyptusPlugin,
] as VisorPlugin[];

/** A registry holding the built-in plugins, and `extra` ones an embedding application gives. */
export function builtinRegistry(extra: readonly unknown[] = []): PluginRegistry {
  const registry = new PluginRegistry();
  for (const plugin of builtinPlugins) registry.register(plugin);
  for (const plugin of extra) registry.register(plugin, { type: 'embedded' });
  return registry;
}
