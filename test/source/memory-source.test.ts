import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PluginRegistry } from '../../core/registry/registry.js';
import { definePlugin } from '../../core/registry/plugin.js';
import { MemorySource } from '../../core/source/memory-source.js';
import { sourceError, refusalOf, type Source } from '../../core/source/port.js';
import { sourceContract } from '../../core/testing/source-contract.js';
import { z } from 'zod';

const images = new Map([
  ['alpha', randomBytes(70_001)],
  ['beta', randomBytes(3)],
]);

sourceContract('memory', async () => ({
  source: async () =>
    new MemorySource([...images].map(([key, data]) => ({ key, version: '1', name: `image ${key}`, data }))),
  expectedBytes: async () => images,
}));

describe('source plugins', () => {
  it('registers a source plugin made by definePlugin({ sources }) and builds it through the registry', async () => {
    const plugins = definePlugin({
      sources: {
        'mem-list': {
          description: 'test source',
          optionsSchema: z.strictObject({ count: z.number().int() }),
          create: (options) =>
            new MemorySource(
              Array.from({ length: options.count }, (_, i) => ({ key: `k${i}`, version: '1', name: `n${i}`, data: Buffer.from([i]) })),
            ),
        },
      },
    });
    expect(plugins.map((p) => [p.kind, p.id])).toEqual([['source', 'mem-list']]);
    const registry = new PluginRegistry();
    for (const plugin of plugins) registry.register(plugin);
    expect(registry.ids('source')).toEqual(['mem-list']);
    const bad = await registry.validateOptions('source', 'mem-list', { count: 'x' }, ['subscriptions', 's', 'options']);
    expect(bad.issues[0]?.path).toBe('subscriptions.s.options.count');
    const { value } = await registry.validateOptions('source', 'mem-list', { count: 2 }, []);
    const source = (await registry.factory('source', 'mem-list').create(value, {} as never)) as Source;
    const listing = await source.list();
    expect('entries' in listing && listing.entries.map((e) => e.key)).toEqual(['k0', 'k1']);
  });

  it('types refusals: the kind follows from the reason, and the reason can be read back', () => {
    const error = sourceError('badSignature', 'list signature does not verify');
    expect(error.kind).toBe('integrity');
    expect(refusalOf(error)).toBe('badSignature');
    expect(sourceError('unreachable', 'down').kind).toBe('unavailable');
    expect(refusalOf(new Error('plain'))).toBeUndefined();
  });

  it('memory source: list() with the last cursor says unchanged; set() makes a new revision', async () => {
    const source = new MemorySource([{ key: 'a', version: '1', name: 'a', data: Buffer.from('x') }]);
    const first = await source.list();
    if (!('entries' in first)) throw new Error('expected a snapshot');
    expect(await source.list({ previous: first.cursor! })).toEqual({ unchanged: true, cursor: first.cursor });
    source.set([]);
    const second = await source.list({ previous: first.cursor! });
    expect('entries' in second && second.entries).toEqual([]);
  });
});
