import 'reflect-metadata';
import { Container } from 'inversify';
import type { Catalog } from '../../core/catalog/port.js';
import type { Env } from '../../core/config/interpolate.js';
import { loadConfig, type VisorConfig } from '../../core/config/load.js';
import { createLogger, type Logger } from '../../core/logging/logger.js';
import { collectSecrets, SecretRegistry } from '../../core/logging/redact.js';
import type { ServiceId } from '../../core/registry/ids.js';
import type { PluginRegistry } from '../../core/registry/registry.js';
import type { Store } from '../../core/store/port.js';
import { builtinRegistry } from '../builtins.js';
import type { ImageService } from '../service/image-service.js';
import type { SyncDeps } from '../sync/runner.js';
import { runtimeModule } from './module.js';
import { type BuiltTargets, type Publish, RuntimeIds } from './services.js';

/** A loaded configuration and what it was loaded with: enough to open runtimes from. */
export interface RuntimeSetup {
  readonly config: VisorConfig;
  /** The built-in plugins, the embedding application's, and those the config's `plugins` named. */
  readonly registry: PluginRegistry;
  readonly logger: Logger;
  readonly secrets: SecretRegistry;
}

export interface RuntimeOptions {
  /** The config file (default: the embedded default configuration). */
  configFile?: string | undefined;
  dataDir?: string | undefined;
  env?: Env;
  /** Overrides the configured logger (tests, `--quiet` commands). */
  logger?: Logger;
  /** Plugins registered before the config is read (an application embedding visor, tests). */
  plugins?: readonly unknown[];
  /** An already loaded configuration (another runtime's): nothing is read again. */
  setup?: RuntimeSetup;
  /** Build the driver of this cloud only (`visor sync -t NAME`). */
  only?: string | undefined;
  /** Use another runtime's catalog and stores instead of opening them (it closes them, not this one). */
  storage?: Runtime;
  /** How content URLs are made for clouds that fetch images by URL (the agent's API server). */
  publish?: Publish;
  /** Without `publish`: serve content URLs from a bare node:http server, if a cloud needs them. */
  serveContent?: boolean;
}

/**
 * One configured visor: the only place where its parts are resolved from the container. Every
 * part is built on first use and once; `close()` closes what was built (drivers, content
 * server, stores, catalog), each exactly once.
 */
export interface Runtime extends RuntimeSetup {
  catalog(): Promise<Catalog>;
  /**
   * A new instance of the configured catalog, built by its plugin's factory but not opened (no
   * `init`) and not closed by the runtime: the caller closes it. For `visor catalog migrate`,
   * since opening may refuse a schema that is behind.
   */
  unopenedCatalog(): Promise<Catalog>;
  stores(): Promise<ReadonlyMap<string, Store>>;
  /** The store new images go to by default (the catalog's runtime's). */
  defaultStore(): Promise<string>;
  /** One driver per configured cloud (or `only`); clouds whose driver failed are in `failed`. */
  targets(): Promise<BuiltTargets>;
  /** What sync runs share: the one assembly of SyncDeps, for `visor sync`, `migrate` and the agent. */
  syncDeps(): Promise<SyncDeps>;
  /** The image service over this runtime's catalog and stores. */
  images(): Promise<ImageService>;
  close(): Promise<void>;
}

/** Reads and checks the configuration, registering the plugins it names; opens nothing. */
export async function loadSetup(options: RuntimeOptions = {}): Promise<RuntimeSetup> {
  const registry = builtinRegistry(options.plugins);
  const config = await loadConfig({
    file: options.configFile,
    dataDir: options.dataDir,
    env: options.env ?? process.env,
    registry,
  });
  const secrets = new SecretRegistry();
  collectSecrets(config, secrets);
  const logger =
    options.logger ?? createLogger({ level: config.logging.level, format: config.logging.format, secrets });
  return { config, registry, logger, secrets };
}

/**
 * The composition root: config -> container -> the parts the CLI, `visor serve` and the agent
 * run on. Third-party plugins are bound by their own modules; everything else here.
 */
export async function openRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const setup = options.setup ?? (await loadSetup(options));
  const { config, registry, logger, secrets } = setup;
  const container = new Container({ defaultScope: 'Singleton' });
  registry.bindInto(container);
  container.load(
    runtimeModule({
      config,
      logger,
      secrets,
      adapterIds: registry.ids('iaas'),
      only: options.only,
      storage: options.storage,
      publish: options.publish,
      serveContent: options.serveContent,
    }),
  );
  const get = <T>(id: ServiceId<T>) => container.getAsync<T>(id);
  let closing: Promise<void> | undefined;
  return {
    config,
    registry,
    logger,
    secrets,
    catalog: () => get(RuntimeIds.Catalog),
    unopenedCatalog: async () => (await get(RuntimeIds.CatalogBuilder))(),
    stores: () => get(RuntimeIds.Stores),
    defaultStore: () => get(RuntimeIds.DefaultStore),
    targets: () => get(RuntimeIds.Targets),
    syncDeps: () => get(RuntimeIds.SyncDeps),
    images: () => get(RuntimeIds.ImageService),
    close() {
      closing ??= container.unbindAllAsync();
      return closing;
    },
  };
}
