import { VisorError } from '../core/errors.js';
import { openRuntime, type Runtime, type RuntimeOptions } from './runtime/open-runtime.js';
import type { BuiltTargets } from './runtime/services.js';
import type { ImageService } from './service/image-service.js';
import type { SyncDeps } from './sync/runner.js';

/** A runtime with what one-shot commands (plan, sync, migrate) use resolved up front. */
export interface SyncSession {
  runtime: Runtime;
  built: BuiltTargets;
  deps: SyncDeps;
  /** The image service over the same catalog and stores (acting as the agent). */
  images: ImageService;
  close(): Promise<void>;
}

/**
 * Opens a runtime for a one-shot command; with `only`, that cloud alone, and it must be usable.
 * `serveContent` serves one-time content URLs while the session lasts, if a cloud needs them.
 */
export async function openSession(
  options: RuntimeOptions,
  only?: string,
  extra: { serveContent?: boolean } = {},
): Promise<SyncSession> {
  const runtime = await openRuntime({ ...options, only, ...(extra.serveContent ? { serveContent: true } : {}) });
  try {
    const built = await runtime.targets();
    if (only !== undefined && !built.targets.has(only)) {
      const have = Object.keys(runtime.config.clouds).join(', ') || 'none';
      const where = runtime.config.file ?? 'the configuration';
      throw (
        built.failed.get(only) ?? new VisorError('invalidInput', `no cloud named ${only} in ${where} (have: ${have})`)
      );
    }
    const deps = await runtime.syncDeps();
    const images = await runtime.images();
    return { runtime, built, deps, images, close: () => runtime.close() };
  } catch (error) {
    await runtime.close();
    throw error;
  }
}
