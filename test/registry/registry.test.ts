import { ContainerModule } from 'inversify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { builtinPlugins, builtinRegistry } from '../../agent/builtins.js';
import { ServiceIds } from '../../core/registry/ids.js';
import { definePlugin } from '../../core/registry/plugin.js';
import { PluginRegistry } from '../../core/registry/registry.js';
import type { Store } from '../../core/store/port.js';

const dummyStore = (id: string) =>
  definePlugin({
    id,
    kind: 'store',
    optionsSchema: z.strictObject({}),
    create: () => ({ kind: id }) as unknown as Store,
  });

describe('plugin registry', () => {
  it('registers every built-in plugin through the public plugin API', () => {
    const registry = builtinRegistry();
    expect(registry.list().map((p) => `${p.kind}:${p.id}`)).toEqual(
      [...builtinPlugins].map((p) => `${p.kind}:${p.id}`).sort((a, b) => a.localeCompare(b)),
    );
    expect(registry.ids('catalog')).toEqual(['mongodb', 'postgresql', 'sqlite']);
    expect(registry.list().every((p) => p.source === 'builtin')).toBe(true);
  });

  it("resolves a plugin's factory by id through the container", async () => {
    const registry = new PluginRegistry();
    registry.register(dummyStore('dummy'));
    const factory = registry.factory('store', 'dummy');
    await expect(Promise.resolve(factory.create({}, {} as never))).resolves.toMatchObject({ kind: 'dummy' });
  });

  it('refuses two plugins with the same kind and id', () => {
    const registry = new PluginRegistry();
    registry.register(dummyStore('twice'));
    expect(() => registry.register(dummyStore('twice'), { type: 'package', package: 'visor-copycat' })).toThrow(
      /plugin package "visor-copycat" registers store plugin "twice", which builtin already registered/,
    );
  });

  it('refuses a malformed plugin, naming each problem', () => {
    const registry = new PluginRegistry();
    expect(() =>
      registry.register({ id: 'UPPER', kind: 'teleporter', module: {} }, { type: 'package', package: 'p' }),
    ).toThrow(
      new RegExp(
        'id must be lower-case.*kind.*optionsSchema must be a ' +
          'Standard Schema.*module must be an inversify ContainerModule',
        's',
      ),
    );
    expect(() => registry.register(null)).toThrow(/invalid plugin/);
  });

  it('refuses a plugin whose module binds no factory under its id', () => {
    const registry = new PluginRegistry();
    const plugin = {
      id: 'lazy',
      kind: 'store' as const,
      optionsSchema: z.object({}),
      module: new ContainerModule(({ bind }) => {
        bind(ServiceIds.StoreFactory)
          .toConstantValue({ create: () => ({}) as Store })
          .whenNamed('another-name');
      }),
    };
    expect(() => registry.register(plugin)).toThrow(/did not bind a store factory named "lazy"/);
    expect(registry.get('store', 'lazy')).toBeUndefined();
  });

  it('reports an unknown plugin id with the known ones', () => {
    const registry = builtinRegistry();
    expect(() => registry.factory('catalog', 'postgres')).toThrow(
      /no catalog plugin "postgres".*known: mongodb, postgresql, sqlite/,
    );
  });

  it("makes a package's plugins from definePlugin({ catalogs, stores, adapters }), bindings included", async () => {
    const plugins = definePlugin({
      stores: {
        alpha: {
          optionsSchema: z.strictObject({ size: z.number() }),
          create: (o) => ({ kind: `alpha-${o.size}` }) as unknown as Store,
        },
      },
      adapters: {
        beta: {
          description: 'a test adapter',
          optionsSchema: z.strictObject({}),
          create: () => ({ adapter: 'beta' }) as never,
        },
      },
    });
    expect(plugins.map((p) => `${p.kind}:${p.id}`)).toEqual(['store:alpha', 'iaas:beta']);
    const registry = new PluginRegistry();
    const source = { type: 'package', package: 'visor-test-bundle', version: '1.0.0' } as const;
    for (const plugin of plugins) registry.register(plugin, source);
    const listed = { id: 'beta', kind: 'iaas', description: 'a test adapter', source: 'visor-test-bundle@1.0.0' };
    expect(registry.list()).toContainEqual(listed);
    const { value } = await registry.validateOptions('store', 'alpha', { size: 3 }, ['stores', 'a', 'options']);
    const made = registry.factory('store', 'alpha').create(value, {} as never);
    await expect(Promise.resolve(made)).resolves.toMatchObject({ kind: 'alpha-3' });
    const entry = { optionsSchema: z.strictObject({}), create: () => ({}) as Store };
    const [badId] = definePlugin({ stores: { 'Not An Id': entry } });
    expect(() => registry.register(badId)).toThrow(/id must be lower-case/);
  });

  it('still takes a plugin written by hand with its own container module', async () => {
    const registry = new PluginRegistry();
    registry.register({
      id: 'handmade',
      kind: 'store',
      optionsSchema: z.strictObject({}),
      module: new ContainerModule(({ bind }) => {
        const factory = { create: () => ({ kind: 'handmade' }) as unknown as Store };
        bind(ServiceIds.StoreFactory).toConstantValue(factory).whenNamed('handmade');
      }),
    });
    const made = registry.factory('store', 'handmade').create({}, {} as never);
    await expect(Promise.resolve(made)).resolves.toMatchObject({ kind: 'handmade' });
  });
});
