import 'reflect-metadata';
import { loadConfig, type VisorConfig } from '../core/config/load.js';
import { createLogger, type Logger } from '../core/logging/logger.js';
import { collectSecrets, SecretRegistry } from '../core/logging/redact.js';
import { PluginRegistry } from '../core/registry/registry.js';
import { runtimeModule } from '../core/registry/runtime.js';
import type { Env } from '../core/config/interpolate.js';
import { builtinPlugins } from './builtins.js';

export interface ComposeOptions {
  configFile?: string | undefined;
  dataDir?: string | undefined;
  env?: Env;
  /** Overrides the configured logger (tests, `--quiet`). */
  logger?: Logger;
}

export interface Composition {
  config: VisorConfig;
  registry: PluginRegistry;
  logger: Logger;
  secrets: SecretRegistry;
  /** Unbinds everything, closing catalogs, stores and drivers that were opened. */
  dispose(): Promise<void>;
}

export function builtinRegistry(): PluginRegistry {
  const registry = new PluginRegistry();
  for (const plugin of builtinPlugins) registry.register(plugin);
  return registry;
}

/** Config -> container: the single place where visor is assembled. */
export async function compose(options: ComposeOptions = {}): Promise<Composition> {
  const registry = builtinRegistry();
  const config = await loadConfig({ file: options.configFile, dataDir: options.dataDir, env: options.env ?? process.env, registry });
  const secrets = new SecretRegistry();
  collectSecrets(config, secrets);
  const logger = options.logger ?? createLogger({ level: config.logging.level, format: config.logging.format, secrets });
  registry.container.load(runtimeModule(config, logger, secrets));
  let disposed = false;
  return {
    config,
    registry,
    logger,
    secrets,
    async dispose() {
      if (disposed) return;
      disposed = true;
      await registry.container.unbindAllAsync();
    },
  };
}
