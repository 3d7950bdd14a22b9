import { VisorError } from '../core/errors.js';
import { resolveAsync, RuntimeIds } from '../core/registry/runtime.js';
import { compose, type ComposeOptions, type Composition } from './compose.js';
import { startContentServer } from './content-server.js';
import { ImageService } from './service/image-service.js';
import { Limiter, type SyncDeps } from './sync/runner.js';
import {
  agentIdOf,
  buildTargets,
  cacheDirOf,
  closeTargets,
  instanceIdOf,
  rivalFinder,
  type BuiltTargets,
} from './targets.js';

/** Everything a one-shot command (plan, sync, migrate) needs: catalog, stores, drivers, sync deps. */
export interface SyncSession {
  composition: Composition;
  built: BuiltTargets;
  deps: SyncDeps;
  /** The image service over the same catalog and stores (acting as the agent). */
  images: ImageService;
  close(): Promise<void>;
}

export async function openSession(options: ComposeOptions, only?: string, extra: { serveContent?: boolean } = {}): Promise<SyncSession> {
  const composition = await compose(options);
  try {
    const catalog = await resolveAsync(composition.registry.container, RuntimeIds.Catalog);
    const stores = await resolveAsync(composition.registry.container, RuntimeIds.Stores);
    const built = await buildTargets(composition, only);
    if (only !== undefined && !built.targets.has(only)) {
      throw built.failed.get(only) ?? new VisorError('invalidInput', `no cloud named ${only} in ${composition.config.file ?? 'the configuration'} (have: ${Object.keys(composition.config.clouds).join(', ') || 'none'})`);
    }
    const agentId = agentIdOf(composition);
    const deps: SyncDeps = {
      catalog,
      stores,
      defaultStore: composition.config.defaultStore,
      cacheDir: cacheDirOf(composition),
      agentId,
      instanceId: instanceIdOf(agentId),
      limiter: new Limiter(composition.config.agent.concurrency),
      logger: composition.logger,
      leaseMs: composition.config.agent.leaseSeconds * 1000,
      keepRuns: composition.config.agent.keepRuns,
      rivals: rivalFinder(composition, built),
    };
    const images = new ImageService({ catalog, stores, defaultStore: composition.config.defaultStore, logger: composition.logger });
    // Clouds that fetch images by URL need someone serving them while the session runs.
    const needsUrls = [...built.targets.values()].some((t) => t.driver.capabilities.importFromUrl || t.driver.capabilities.requiresUrl);
    const content = extra.serveContent && needsUrls ? await startContentServer(composition.config.agent.publicUrl) : undefined;
    if (content) deps.publish = (source) => content.publisher.publish(source);
    return {
      composition,
      built,
      deps,
      images,
      close: async () => {
        await content?.close();
        await closeTargets(built);
        await composition.dispose();
      },
    };
  } catch (error) {
    await composition.dispose();
    throw error;
  }
}
