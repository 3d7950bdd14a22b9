import { ContainerModule } from 'inversify';
import { z } from 'zod';
import type { Catalog } from '../catalog/port.js';
import type { IaasDriver } from '../iaas/port.js';
import type { Source } from '../source/port.js';
import type { Store } from '../store/port.js';
import { factoryIdByKind, pluginKinds, type PluginContext, type PluginFactory, type PluginKind } from './ids.js';
import { isStandardSchema, type StandardSchemaV1 } from './standard-schema.js';

export const pluginIdPattern = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * A plugin: an id, a kind, the schema of its options, and a container module that binds its
 * factory under the kind's service id, named by the plugin id. Built-in catalogs, stores and
 * adapters are plugins of exactly this shape; third-party packages export the same thing, made
 * by `definePlugin` (or, to bind services of their own for injection, with a module by hand).
 */
export interface VisorPlugin<Options = unknown> {
  id: string;
  kind: PluginKind;
  description?: string;
  optionsSchema: StandardSchemaV1<unknown, Options>;
  module: ContainerModule;
}

type Product<K extends PluginKind> = K extends 'catalog'
  ? Catalog
  : K extends 'store'
    ? Store
    : K extends 'source'
      ? Source
      : IaasDriver;

/** One catalog, store or adapter of a plugin: its options' schema and the factory of its product. */
export interface PluginEntry<K extends PluginKind, Options> {
  description?: string;
  optionsSchema: StandardSchemaV1<unknown, Options>;
  create: (options: Options, context: PluginContext) => Product<K> | Promise<Product<K>>;
}

/** A single plugin, kind and id spelled out (the built-in plugins are written this way). */
export interface PluginDefinition<K extends PluginKind, Options> extends PluginEntry<K, Options> {
  id: string;
  kind: K;
}

type Entries<K extends PluginKind, T> = { [Id in keyof T]: PluginEntry<K, T[Id]> };

/** What a plugin package provides, by id: any number of catalogs, stores, IaaS adapters and image sources. */
export interface PluginPackageDefinition<C, S, A, R = object> {
  catalogs?: Entries<'catalog', C>;
  stores?: Entries<'store', S>;
  adapters?: Entries<'iaas', A>;
  /** Image sources a subscription can follow (`sources: { oci: { optionsSchema, create } }`). */
  sources?: Entries<'source', R>;
}

/**
 * The way to write plugins: give each product's options schema and `create`, get plugins whose
 * container bindings are made for you. A package exports the result as its default export:
 *
 *   export default definePlugin({ adapters: { tinycloud: { optionsSchema, create } } });
 *
 * The single form `definePlugin({ id, kind, optionsSchema, create })` gives one plugin.
 */
export function definePlugin<K extends PluginKind, Options>(
  definition: PluginDefinition<K, Options>,
): VisorPlugin<Options>;
export function definePlugin<C = object, S = object, A = object, R = object>(
  definition: PluginPackageDefinition<C, S, A, R>,
): VisorPlugin[];
export function definePlugin(
  definition: PluginDefinition<PluginKind, unknown> | PluginPackageDefinition<object, object, object>,
): VisorPlugin | VisorPlugin[] {
  if ('id' in definition && 'kind' in definition) return single(definition);
  const entries = (kind: PluginKind, group: object | undefined) =>
    Object.entries(group ?? {}).map(([id, entry]) =>
      single({ ...(entry as PluginEntry<PluginKind, unknown>), id, kind }),
    );
  const bundle = definition as PluginPackageDefinition<object, object, object>;
  return [
    ...entries('catalog', bundle.catalogs),
    ...entries('store', bundle.stores),
    ...entries('iaas', bundle.adapters),
    ...entries('source', bundle.sources),
  ];
}

function single(definition: PluginDefinition<PluginKind, unknown>): VisorPlugin {
  const factory: PluginFactory<unknown, unknown> = { create: definition.create };
  const { id, kind } = definition;
  return {
    id,
    kind,
    ...(definition.description !== undefined ? { description: definition.description } : {}),
    optionsSchema: definition.optionsSchema,
    module: new ContainerModule(({ bind }) => {
      bind(factoryIdByKind[kind])
        .toConstantValue(factory as PluginFactory<unknown>)
        .whenNamed(id);
    }),
  };
}

/** Shape check for plugins that come from packages: fail loudly, never half-load. */
export const pluginShape = z.object({
  id: z.string().regex(pluginIdPattern, 'must be lower-case letters, digits and dashes, starting with a letter'),
  kind: z.enum(pluginKinds),
  description: z.string().optional(),
  optionsSchema: z.custom<StandardSchemaV1>(
    isStandardSchema,
    'must be a Standard Schema (zod, valibot, ...) for the options',
  ),
  module: z.custom<ContainerModule>(
    (m) => typeof m === 'object' && m !== null && typeof (m as { load?: unknown }).load === 'function',
    'must be an inversify ContainerModule',
  ),
});
