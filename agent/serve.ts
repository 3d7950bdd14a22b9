import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { SecretBox } from '../core/auth/secret-box.js';
import type { Catalog } from '../core/catalog/port.js';
import type { VisorConfig } from '../core/config/load.js';
import { VisorError } from '../core/errors.js';
import type { Store } from '../core/store/port.js';
import { Authenticator } from './api/auth.js';
import { defaultMaxConnections } from './api/connection-guard.js';
import { replicationRoutes, type CloudSummary } from './api/routes/replication.js';
import { summariseRun } from './api/run-view.js';
import { buildApiServer, type ServerLimits } from './api/server.js';
import { SessionStore } from './api/sessions.js';
import { uiPublicPaths, uiRoutes } from './ui/routes.js';
import type { ReadinessCheck } from './api/health.js';
import type { Registry } from 'prom-client';
import type { Runtime } from './runtime/open-runtime.js';
import type { ImageService } from './service/image-service.js';

export interface ServeOptions {
  host?: string | undefined;
  port?: number | undefined;
  /** Routes the agent adds to the same server. */
  extraRoutes?: FastifyPluginAsync;
  publicPaths?: readonly string[];
  /** Path prefixes whose rest is a secret token, masked in the log. */
  secretPaths?: readonly string[];
  /** Upload bodies idle this long are dropped (tests shorten it). */
  uploadIdleMs?: number;
  /** The configured clouds as the agent knows them (schedule, next run); default: the config and the run history. */
  clouds?: () => Promise<CloudSummary[]>;
  /** More for /health/ready to check (the agent's runs). */
  readiness?: readonly ReadinessCheck[];
  /** More metrics served on /metrics (the agent's). */
  metricsRegistries?: readonly Registry[];
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  service: ImageService;
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then releases everything. */
  close(graceMs?: number): Promise<void>;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

/** The key that seals the users' secret keys in the catalog (created on first use). */
export async function sealingBox({ config }: { config: VisorConfig }): Promise<SecretBox> {
  const keyFile = config.server.auth.keyFile;
  return SecretBox.fromFile(isAbsolute(keyFile) ? keyFile : resolve(config.dataDir, keyFile));
}

/**
 * The image service's HTTP API over a runtime's catalog and stores, listening. Closing the
 * server closes the runtime.
 */
export async function startServer(runtime: Runtime, options: ServeOptions = {}): Promise<RunningServer> {
  const { config, logger } = runtime;
  const host = options.host ?? config.server.host;
  const port = options.port ?? config.server.port;
  if (!config.server.auth.enabled && !isLoopback(host)) {
    throw new VisorError(
      'config',
      `server.auth.enabled is false, which is only allowed on a loopback address; ${host} is not one`,
    );
  }
  // Before anything is opened: a TLS file that cannot be read is a config mistake to report at once.
  const tls = config.server.tls ? await readTls(config.server.tls) : undefined;
  const catalog = await runtime.catalog();
  const stores = await runtime.stores();
  const service = await runtime.images();
  const authenticator = config.server.auth.enabled
    ? new Authenticator({
        users: catalog.users,
        replays: catalog.replays,
        box: await sealingBox(runtime),
        clockSkewSeconds: config.server.auth.clockSkew,
      })
    : undefined;
  await service.recoverStaleUploads();
  for (const [name, store] of stores) {
    const swept = (await store.sweep?.(60 * 60_000).catch(() => 0)) ?? 0;
    if (swept > 0) logger.warn('removed leftovers of interrupted uploads', { store: name, count: swept });
  }
  const clouds = options.clouds ?? (() => configuredClouds(config, catalog));
  const sessions = authenticator ? new SessionStore({ users: catalog.users, state: catalog.state }) : undefined;
  const extraRoutes: FastifyPluginAsync = async (app) => {
    await app.register(replicationRoutes({ service, clouds }));
    await app.register(uiRoutes({ authenticator, sessions }));
    if (options.extraRoutes) await app.register(options.extraRoutes);
  };
  const build = () =>
    buildApiServer({
      service,
      logger: logger.child({ component: 'api' }),
      authenticator,
      extraRoutes,
      publicPaths: [...uiPublicPaths, ...(options.publicPaths ?? [])],
      ...(sessions ? { sessions } : {}),
      ...(options.secretPaths ? { secretPaths: options.secretPaths } : {}),
      uploadIdleMs: options.uploadIdleMs ?? config.server.uploadIdleSeconds * 1000,
      limits: serverLimits(config),
      ...(tls ? { tls } : {}),
      readiness: [...storageReadiness(catalog, stores, config.defaultStore), ...(options.readiness ?? [])],
      readyDeadlineMs: config.server.readyTimeoutSeconds * 1000,
      metricsAccess: {
        enabled: config.server.metrics.enabled,
        open: isLoopback(host),
        token: config.server.metrics.token,
        registries: options.metricsRegistries ?? [],
      },
    });
  let app: FastifyInstance;
  try {
    app = build();
  } catch (error) {
    // The only thing that can fail here is the TLS context: a key that is not the cert's, not PEM, ...
    if (!tls) throw error;
    const files = `${config.server.tls!.cert} and ${config.server.tls!.key}`;
    throw new VisorError('config', `server.tls: cannot use ${files}: ${(error as Error).message}`, { cause: error });
  }
  // Requests in flight: a closing server waits for them (up to its grace), not for connections
  // that carry none (a client's spare keep-alive or half-open socket kept one stop waiting 20 s).
  let inFlight = 0;
  app.server.on('request', (_request, response) => {
    inFlight++;
    response.once('close', () => inFlight--);
  });
  try {
    await app.listen({ host, port });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? `port ${port} is already in use`
        : code === 'EACCES'
          ? `no permission to listen on port ${port}`
          : (error as Error).message;
    throw new VisorError('unavailable', `cannot listen on ${host}:${port}: ${why}`, { cause: error });
  }
  // Once listening (a server that cannot listen leaves nothing running behind it). From now on
  // uploads compute only their sha256 on the request path; md5 and sha512 follow off it.
  await service.startBackgroundWork();
  const address = app.server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  const url = `${config.server.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
  if (!authenticator) logger.warn('authentication is OFF: every request acts as an admin (loopback development only)');
  else if ((await catalog.users.list()).length === 0)
    logger.warn('no users yet: create one with `visor users add NAME --admin`');
  logger.info('visor image service listening', {
    url,
    catalog: catalog.kind,
    stores: [...stores.keys()],
    defaultStore: config.defaultStore,
  });
  // Due deprecation dates and expired deletions are applied while the server runs (any server
  // may: each change is checked by revision).
  const sweep = () =>
    void service.sweepLifecycle().catch((error: unknown) => logger.warn('life cycle sweep failed', { error }));
  sweep();
  const sweeper = setInterval(sweep, config.lifecycle.sweepEvery);
  sweeper.unref();
  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    service,
    catalog,
    stores,
    close(graceMs = 30_000) {
      closing ??= (async () => {
        clearInterval(sweeper);
        const timer = setTimeout(() => app.server.closeAllConnections(), graceMs);
        timer.unref();
        const drained = setInterval(() => {
          if (inFlight === 0) app.server.closeAllConnections();
        }, 100);
        drained.unref();
        await app.close();
        clearTimeout(timer);
        clearInterval(drained);
        // Before the catalog closes: digests it was computing stay pending, taken up on the next start.
        await service.close();
        await runtime.close();
      })();
      return closing;
    },
  };
}

/** The clouds of the config with their last run: what a server without the agent knows of them. */
async function configuredClouds(config: VisorConfig, catalog: Catalog): Promise<CloudSummary[]> {
  const out: CloudSummary[] = [];
  for (const [name, cloud] of Object.entries(config.clouds)) {
    const last = (await catalog.runs.list({ target: name, limit: 1 }))[0];
    out.push({
      name,
      adapter: cloud.adapter,
      enabled: cloud.sync.enabled,
      ...(cloud.sync.schedule ? { schedule: cloud.sync.schedule } : {}),
      ...(last ? { lastRun: summariseRun(last) } : {}),
    });
  }
  return out;
}

function serverLimits(config: VisorConfig): ServerLimits {
  const limits = config.server.limits;
  return {
    headerTimeoutMs: limits.headerTimeoutSeconds * 1000,
    bodyTimeoutMs: limits.bodyTimeoutSeconds * 1000,
    uploadRate: { minBytesPerSecond: limits.minUploadBytesPerSecond, windowMs: limits.uploadRateWindowSeconds * 1000 },
    maxConnections: limits.maxConnections ?? defaultMaxConnections(),
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
  };
}

async function readTls(files: { cert: string; key: string }): Promise<{ cert: Buffer; key: Buffer }> {
  const read = (what: string, path: string) =>
    readFile(path).catch((error: unknown) => {
      const why = (error as Error).message;
      throw new VisorError('config', `server.tls.${what}: cannot read ${path}: ${why}`, { cause: error });
    });
  return { cert: await read('cert', files.cert), key: await read('key', files.key) };
}

/** Ready when the catalog answers a count and the default store its ping. */
export function storageReadiness(
  catalog: Catalog,
  stores: ReadonlyMap<string, Store>,
  defaultStore: string,
): ReadinessCheck[] {
  const store = stores.get(defaultStore);
  return [
    { name: 'catalog', backend: 'catalog', check: async () => void (await catalog.images.count({})) },
    {
      name: `store ${defaultStore}`,
      backend: `store:${defaultStore}`,
      check: async (signal) => {
        if (!store) throw new VisorError('config', `default store ${defaultStore} is not configured`);
        await store.ping?.(signal);
      },
    },
  ];
}
