import { ContainerModule } from 'inversify';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { builtinPlugins } from '../../agent/builtins.js';
import { builtinRegistry } from '../../agent/compose.js';
import { ServiceIds } from '../../core/registry/ids.js';
import { definePlugin } from '../../core/registry/plugin.js';
import { PluginRegistry } from '../../core/registry/registry.js';
import type { Store } from '../../core/store/port.js';

const dummyStore = (id: string) =>
  definePlugin({ id, kind: 'store', optionsSchema: z.strictObject({}), create: () => ({ kind: id }) as unknown as Store });

describe('plugin registry', () => {
  it('registers every built-in plugin through the public plugin API', () => {
    const registry = builtinRegistry();
    expect(registry.list().map((p) => `${p.kind}:${p.id}`)).toEqual(
      [...builtinPlugins].map((p) => `${p.kind}:${p.id}`).sort((a, b) => a.localeCompare(b)),
    );
    expect(registry.ids('catalog')).toEqual(['mongodb', 'postgresql', 'sqlite']);
    expect(registry.list().every((p) => p.source === 'builtin')).toBe(true);
  });

  it('resolves a plugin\'s factory by id through the container', async () => {
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
    expect(() => registry.register({ id: 'UPPER', kind: 'teleporter', module: {} }, { type: 'package', package: 'p' })).toThrow(
      /id must be lower-case.*kind.*optionsSchema must be a Standard Schema.*module must be an inversify ContainerModule/s,
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
        bind(ServiceIds.StoreFactory).toConstantValue({ create: () => ({}) as Store }).whenNamed('another-name');
      }),
    };
    expect(() => registry.register(plugin)).toThrow(/did not bind a store factory named "lazy"/);
    expect(registry.get('store', 'lazy')).toBeUndefined();
  });

  it('reports an unknown plugin id with the known ones', () => {
    const registry = builtinRegistry();
    expect(() => registry.factory('catalog', 'postgres')).toThrow(/no catalog plugin "postgres".*known: mongodb, postgresql, sqlite/);
  });
});
