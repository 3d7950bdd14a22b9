import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ContainerModule, inject, injectable } from 'inversify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isVisorError } from '../../core/errors.js';
import type { DriverCapabilities, IaasDriver } from '../../core/iaas/port.js';
import type { Logger } from '../../core/logging/logger.js';
import { silentLogger } from '../../core/logging/logger.js';
import { type PluginContext, ServiceIds } from '../../core/registry/ids.js';
import { definePlugin, type VisorPlugin } from '../../core/registry/plugin.js';
import type { Store } from '../../core/store/port.js';
import { openRuntime, type Runtime } from './open-runtime.js';

/**
 * The composition root's wiring, resolved for real: what each part is built from, that it is
 * built once, and that closing the runtime closes everything it built, once.
 */

const capabilities = (byUrl: boolean): DriverCapabilities => ({
  diskFormats: ['raw'],
  containerFormats: ['bare'],
  retireModes: ['delete'],
  access: ['public', 'private'],
  reportsChecksums: [],
  reportsSize: true,
  importFromUrl: byUrl,
  requiresUrl: byUrl,
  properties: true,
  tags: true,
  download: false,
  detectsInUse: false,
});

interface Built {
  name: string;
  options: { region: string; byUrl: boolean };
  context: PluginContext;
  closed: number;
}

/** An adapter whose drivers record how they were built and closed (no cloud is involved). */
function recordingAdapter(built: Built[]): VisorPlugin {
  const [plugin] = definePlugin({
    adapters: {
      recording: {
        optionsSchema: z.strictObject({
          region: z.string(),
          byUrl: z.boolean().default(false),
          fail: z.boolean().default(false),
        }),
        create: (options, context) => {
          if (options.fail) throw new Error(`cannot reach ${options.region}`);
          const record: Built = { name: context.name, options, context, closed: 0 };
          built.push(record);
          const driver: Partial<IaasDriver> = {
            adapter: 'recording',
            capabilities: capabilities(options.byUrl),
            list: async () => [],
            scope: async () => options.region,
            close: async () => {
              record.closed++;
            },
          };
          return driver as IaasDriver;
        },
      },
    },
  });
  return plugin!;
}

/** A store that counts its closes, so that the runtime's close can be seen. */
function countingStore(closes: { count: number }): VisorPlugin {
  return definePlugin({
    id: 'counting',
    kind: 'store',
    optionsSchema: z.strictObject({}),
    create: () =>
      ({
        kind: 'counting',
        capabilities: { writable: false, ranges: false },
        close: async () => {
          closes.count++;
        },
      }) as unknown as Store,
  });
}

/** A plugin that binds its factory as a class and has the container inject the logger into it. */
function injectedAdapter(seen: { logger?: Logger }): VisorPlugin {
  @injectable()
  class Factory {
    constructor(@inject(ServiceIds.Logger) private readonly logger: Logger) {}
    create(): IaasDriver {
      seen.logger = this.logger;
      return {
        adapter: 'injected',
        capabilities: capabilities(false),
        close: async () => undefined,
      } as unknown as IaasDriver;
    }
  }
  // Written by hand on purpose: a plugin that binds services of its own for injection.
  return {
    id: 'injected',
    kind: 'iaas',
    optionsSchema: z.strictObject({}),
    module: new ContainerModule(({ bind }) => {
      bind(ServiceIds.IaasDriverFactory).to(Factory).whenNamed('injected');
    }),
  };
}

describe('the runtime (composition root)', () => {
  let dir: string;
  let config: string;
  const built: Built[] = [];
  const storeCloses = { count: 0 };
  const injected: { logger?: Logger } = {};
  const plugins = () => [recordingAdapter(built), countingStore(storeCloses), injectedAdapter(injected)];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-runtime-'));
    config = join(dir, 'visor.yaml');
    await writeFile(
      config,
      `dataDir: ${join(dir, 'data')}
logging: { level: error }
agent: { id: wiring-agent, concurrency: 3, leaseSeconds: 42, keepRuns: 7, cacheDir: spool }
stores:
  local: { type: file, options: { path: images } }
  extra: { type: counting }
defaultStore: local
clouds:
  north: { adapter: recording, options: { region: eu-north } }
  south: { adapter: recording, options: { region: eu-north, byUrl: true } }
  broken: { adapter: recording, options: { region: nowhere, fail: true } }
  plain: { adapter: injected }
`,
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const open = (extra: Parameters<typeof openRuntime>[0] = {}) =>
    openRuntime({ configFile: config, env: {}, logger: silentLogger, plugins: plugins(), ...extra });

  it('resolves each part once, from the config, and closes each once', async () => {
    built.length = 0;
    storeCloses.count = 0;
    const runtime = await open();
    const catalog = await runtime.catalog();
    expect(await runtime.catalog()).toBe(catalog);
    const stores = await runtime.stores();
    expect([...stores.keys()]).toEqual(['local', 'extra']);
    expect(await runtime.stores()).toBe(stores);
    const images = await runtime.images();
    expect(await runtime.images()).toBe(images);

    const targets = await runtime.targets();
    expect([...targets.targets.keys()]).toEqual(['north', 'south', 'plain']);
    expect(targets.failed.get('broken')?.message).toMatch(/cannot reach nowhere/);
    expect(built.map((b) => [b.name, b.options.region, b.context.dataDir])).toEqual([
      ['north', 'eu-north', join(dir, 'data')],
      ['south', 'eu-north', join(dir, 'data')],
    ]);
    expect(built[0]!.context.secrets).toBe(runtime.secrets);
    expect(injected.logger).toBeDefined();

    const deps = await runtime.syncDeps();
    expect(await runtime.syncDeps()).toBe(deps);
    expect(deps.catalog).toBe(catalog);
    expect(deps.stores).toBe(stores);
    expect(deps).toMatchObject({
      defaultStore: 'local',
      agentId: 'wiring-agent',
      leaseMs: 42_000,
      keepRuns: 7,
      cacheDir: join(dir, 'data', 'spool'),
    });
    expect(deps.instanceId).toMatch(/^wiring-agent\/\d+\/[0-9a-f]{6}$/);
    expect(deps.publish).toBeUndefined();
    // Clouds of one adapter with the same scope see the same images; one whose driver cannot be
    // built cannot say, so it counts as a rival too. The injected adapter's cloud is another adapter.
    const rivals = await deps.rivals!(targets.targets.get('north')!);
    expect(rivals.map((r) => r.name)).toEqual(['south', 'broken']);

    await runtime.close();
    await runtime.close();
    expect(built.map((b) => b.closed)).toEqual([1, 1]);
    expect(storeCloses.count).toBe(1);
    await expect(catalog.images.list({})).rejects.toThrow();
  });

  it('builds one cloud only when asked', async () => {
    built.length = 0;
    const runtime = await open({ only: 'south' });
    try {
      expect([...(await runtime.targets()).targets.keys()]).toEqual(['south']);
      expect(built.map((b) => b.name)).toEqual(['south']);
    } finally {
      await runtime.close();
    }
  });

  it('opens nothing that is not asked for', async () => {
    built.length = 0;
    storeCloses.count = 0;
    const runtime = await open();
    await runtime.close();
    expect(built).toEqual([]);
    expect(storeCloses.count).toBe(0);
  });

  it('builds an unopened catalog on request, that the caller owns', async () => {
    const runtime = await open();
    const first = await runtime.unopenedCatalog();
    const second = await runtime.unopenedCatalog();
    try {
      expect(second).not.toBe(first);
      await first.init();
      await runtime.close();
      // The runtime never opened its own catalog, and closing it left the caller's one open.
      expect((await first.images.list({})).items).toEqual([]);
    } finally {
      await first.close();
      await second.close();
    }
  });

  it("borrows another runtime's catalog and stores without closing them", async () => {
    storeCloses.count = 0;
    const base = await open();
    const catalog = await base.catalog();
    const next = await openRuntime({ setup: base, storage: base });
    try {
      expect(await next.catalog()).toBe(catalog);
      expect(await next.stores()).toBe(await base.stores());
      expect((await next.syncDeps()).catalog).toBe(catalog);
      await next.close();
      expect(storeCloses.count).toBe(0);
      expect((await catalog.images.list({})).items).toEqual([]);
    } finally {
      await base.close();
    }
    expect(storeCloses.count).toBe(1);
  });

  it('serves content URLs from a bare server only when a cloud fetches images by URL, until closed', async () => {
    const none = await open({ only: 'north', serveContent: true });
    try {
      expect((await none.syncDeps()).publish).toBeUndefined();
    } finally {
      await none.close();
    }
    const runtime: Runtime = await open({ only: 'south', serveContent: true });
    const deps = await runtime.syncDeps();
    const bytes = Buffer.from('image bytes for a cloud that fetches them');
    const publish = deps.publish!;
    const { url } = publish({
      size: bytes.length,
      checksums: { md5: '', sha256: '', sha512: '' },
      diskFormat: 'raw',
      containerFormat: 'bare',
      open: async () => Readable.from([bytes]),
    });
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
    await runtime.close();
    await expect(fetch(url)).rejects.toThrow();
  });

  it('reports a config naming an unknown adapter as a config error, before anything is opened', async () => {
    const error = await openRuntime({ configFile: config, env: {}, logger: silentLogger }).catch((e: unknown) => e);
    expect(isVisorError(error, 'config')).toBe(true);
    expect((error as Error).message).toMatch(/clouds\.north\.adapter: unknown adapter "recording"/);
  });
});
