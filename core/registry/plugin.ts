import { ContainerModule } from 'inversify';
import { z } from 'zod';
import type { Catalog } from '../catalog/port.js';
import type { IaasDriver } from '../iaas/port.js';
import type { Store } from '../store/port.js';
import { factoryIdByKind, pluginKinds, type PluginContext, type PluginFactory, type PluginKind } from './ids.js';
import { isStandardSchema, type StandardSchemaV1 } from './standard-schema.js';

export const pluginIdPattern = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * A plugin: an id, a kind, the schema of its options, and a container module that binds its
 * factory under the kind's service id, named by the plugin id. Built-in catalogs, stores and
 * adapters are plugins of exactly this shape; third-party packages export the same thing.
 */
export interface VisorPlugin<Options = unknown> {
  id: string;
  kind: PluginKind;
  description?: string;
  optionsSchema: StandardSchemaV1<unknown, Options>;
  module: ContainerModule;
}

type Product<K extends PluginKind> = K extends 'catalog' ? Catalog : K extends 'store' ? Store : IaasDriver;

export interface PluginDefinition<K extends PluginKind, Options> {
  id: string;
  kind: K;
  description?: string;
  optionsSchema: StandardSchemaV1<unknown, Options>;
  create: (options: Options, context: PluginContext) => Product<K> | Promise<Product<K>>;
}

/** The easy way to write a plugin: give `create`, get the module that binds it. */
export function definePlugin<K extends PluginKind, Options>(definition: PluginDefinition<K, Options>): VisorPlugin<Options> {
  const factory: PluginFactory<Product<K>, Options> = { create: definition.create };
  return {
    id: definition.id,
    kind: definition.kind,
    ...(definition.description !== undefined ? { description: definition.description } : {}),
    optionsSchema: definition.optionsSchema,
    module: new ContainerModule(({ bind }) => {
      bind(factoryIdByKind[definition.kind]).toConstantValue(factory as PluginFactory<unknown>).whenNamed(definition.id);
    }),
  };
}

/** Shape check for plugins that come from packages: fail loudly, never half-load. */
export const pluginShape = z.object({
  id: z.string().regex(pluginIdPattern, 'must be lower-case letters, digits and dashes, starting with a letter'),
  kind: z.enum(pluginKinds),
  description: z.string().optional(),
  optionsSchema: z.custom<StandardSchemaV1>(isStandardSchema, 'must be a Standard Schema (zod, valibot, ...) for the options'),
  module: z.custom<ContainerModule>(
    (m) => typeof m === 'object' && m !== null && typeof (m as { load?: unknown }).load === 'function',
    'must be an inversify ContainerModule',
  ),
});
