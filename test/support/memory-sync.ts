import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Limiter } from '../../agent/sync/limiter.js';
import type { SyncDeps, Target } from '../../agent/sync/runner.js';
import type { Catalog } from '../../core/catalog/port.js';
import { SqliteCatalog } from '../../core/catalog/sqlite/sqlite-catalog.js';
import { syncPolicySchema } from '../../core/config/sync-policy.js';
import { MemoryCloud, type MemoryCloudOptions } from '../../core/iaas/memory/client.js';
import { MemoryDriver, type MemoryDriverOptions } from '../../core/iaas/memory/driver.js';
import type { IaasDriver } from '../../core/iaas/port.js';
import { newImage } from '../../core/image/image.js';
import type { Image, ImageDraft } from '../../core/image/model.js';
import { silentLogger, type Logger } from '../../core/logging/logger.js';
import { FileStore } from '../../core/store/file/file-store.js';
import { putInspected } from '../../core/store/inspected-put.js';
import type { Store } from '../../core/store/port.js';

/**
 * A whole sync world in one process, fast enough for many runs per test: the real SQLite catalog
 * and file store in a temporary folder, and the memory cloud (core/iaas/memory) as the cloud. The
 * agent's planner, executor and runner run as they do against a real cloud.
 */
export interface MemorySyncWorld {
  dir: string;
  catalog: Catalog;
  store: Store;
  cloud: MemoryCloud;
  agentId: string;
  /** A target named `name` on the memory cloud, with a policy from `policy` (sync options as in a config). */
  target(
    policy?: Record<string, unknown>,
    driver?: Partial<Omit<MemoryDriverOptions, 'cloud'>> & { driver?: IaasDriver },
    name?: string,
  ): Target;
  deps(overrides?: Partial<SyncDeps>): SyncDeps;
  /** A public catalog image with `bytes` as its (raw) content. */
  addImage(name: string, bytes: Buffer, draft?: Partial<ImageDraft>): Promise<Image>;
  close(): Promise<void>;
}

export async function memorySyncWorld(
  options: { cloud?: MemoryCloud | MemoryCloudOptions; catalogPath?: string; logger?: Logger } = {},
): Promise<MemorySyncWorld> {
  const dir = await mkdtemp(join(tmpdir(), 'visor-memory-sync-'));
  const catalog = new SqliteCatalog({ path: options.catalogPath ?? join(dir, 'catalog.db') });
  await catalog.init();
  const store = new FileStore({ root: join(dir, 'images'), fsync: false });
  const cloud = options.cloud instanceof MemoryCloud ? options.cloud : new MemoryCloud(options.cloud ?? {});
  const agentId = `agent-${randomUUID().slice(0, 8)}`;
  const logger = options.logger ?? silentLogger;
  return {
    dir,
    catalog,
    store,
    cloud,
    agentId,
    target: (policy = {}, driver = {}, name = 'lab') => {
      const { driver: given, ...driverOptions } = driver;
      return {
        name,
        adapter: 'memory',
        policy: syncPolicySchema.parse({ retries: { attempts: 1, backoff: '1ms' }, ...policy }),
        driver: given ?? new MemoryDriver({ cloud, project: 'lab', pollIntervalMs: 2, ...driverOptions }),
      };
    },
    deps: (overrides = {}) => ({
      catalog,
      stores: new Map([['local', store]]),
      defaultStore: 'local',
      cacheDir: join(dir, 'cache'),
      agentId,
      instanceId: `instance-${randomUUID().slice(0, 8)}`,
      limiter: new Limiter(4),
      logger,
      leaseMs: 60_000,
      keepRuns: 50,
      ...overrides,
    }),
    addImage: async (name, bytes, draft = {}) => {
      const image = newImage({
        name,
        architecture: 'x86_64',
        diskFormat: 'raw',
        containerFormat: 'bare',
        access: 'public',
        ...draft,
      });
      const put = await putInspected(store, image.id, Readable.from([bytes]), {
        size: bytes.length,
        declared: 'raw',
        container: 'bare',
      });
      const { uri, size, checksums } = put;
      return catalog.images.create({
        ...image,
        status: 'available',
        location: { store: 'local', uri },
        size,
        checksums,
        uploadedAt: image.createdAt,
      });
    },
    close: async () => {
      await catalog.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
