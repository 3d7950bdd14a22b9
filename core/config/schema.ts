import { z } from 'zod';
import { defaultSoftDeleteMs } from '../image/deprecation.js';
import { storeNamePattern } from '../image/schema.js';
import { byteSize } from './byte-size.js';
import { logLevels } from '../logging/logger.js';
import { duration, syncPolicySchema } from './sync-policy.js';

const options = z.record(z.string(), z.unknown(), 'must be a mapping of option names to values');
const instanceName = z
  .string()
  .regex(storeNamePattern, 'names use lower-case letters, digits, _ and -, starting with a letter');

export const pluginInstanceSchema = z.strictObject({
  type: z.string({ error: 'is required: the id of the plugin that provides it' }),
  options: options.optional(),
});

/** A store: its plugin and options, and what syncs may take of it (reads of images on their way to clouds). */
export const storeInstanceSchema = pluginInstanceSchema.extend({
  /** Bytes per second over every sync transfer reading from this store together (e.g. "50MiB"). */
  maxBandwidth: byteSize.refine((n) => n > 0, 'must be more than 0 (leave it out for no limit)').optional(),
  /** Sync transfers reading from this store at once, across all clouds. */
  concurrency: z.number().int().min(1).max(256).optional(),
});

export const cloudSchema = z.strictObject({
  adapter: z.string({ error: 'is required: the id of the IaaS adapter (see `visor plugins`)' }),
  options: options.optional(),
  sync: syncPolicySchema.optional(),
});

/** An image list or stream followed into the catalog (HEPiX, simplestreams, or a plugin's source). */
export const subscriptionSchema = z.strictObject({
  source: z.string({ error: 'is required: the id of the source plugin (hepix, simplestreams, ...)' }),
  options: options.optional(),
  /** `key=value`, `key!=value`, `key~regex`, `key!~regex` on entry fields and properties; all must hold. */
  filters: z
    .array(
      z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9_.:-]*(!=|!~|=|~)/, 'must be key=value, key!=value, key~regex or key!~regex'),
    )
    .default([]),
  /** What becomes of an imported image whose entry left the list, expired, or was replaced. */
  retire: z.enum(['deprecate', 'delete', 'keep']).default('deprecate'),
  /** Bytes per second over all of this subscription's downloads together (e.g. "20MiB"). */
  maxBandwidth: byteSize.optional(),
  concurrency: z.number().int().min(1).max(64).default(2),
  access: z.enum(['public', 'private']).default('public'),
  /** Cron expression for `visor agent`; off (manual `visor sources sync`) when absent. */
  schedule: z.string().min(1).optional(),
  enabled: z.boolean().default(true),
});

export const webhookSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  secret: z.string().min(16, 'must be at least 16 characters (use ${ENV_VAR})'),
  events: z.array(z.enum(['image.imported', 'image.failed', 'image.retired', 'run.failed'])).optional(),
});

export const serverSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535, 'must be a TCP port (0-65535)').default(4568),
  /** An upload whose body stops arriving for this long is dropped (and keeps nothing). */
  uploadIdleSeconds: z.number().int().min(5).max(86_400).default(120),
  /** Largest image an upload may store (Glance's image_size_cap); bigger ones get 413 and keep nothing. */
  maxImageSize: byteSize.default(2 ** 40),
  /** Bytes each owner's images may take in the stores (references to HTTP locations do not count). */
  quota: z
    .strictObject({
      /** For every owner without a quota of its own; none by default. */
      perUser: byteSize.optional(),
      users: z.record(z.string().min(1), byteSize).default({}),
    })
    .prefault({}),
  /** HTTPS: PEM files, relative to the config file's folder. Without it the API speaks plain HTTP. */
  tls: z
    .strictObject({
      cert: z.string().min(1).describe('certificate chain (PEM)'),
      key: z.string().min(1).describe('private key (PEM)'),
    })
    .optional(),
  /** What one client may hold of the server: deadlines, a minimum upload rate, connection caps. */
  limits: z
    .strictObject({
      /** A connection must have sent its request headers (or, with TLS, finished the handshake) within this. */
      headerTimeoutSeconds: z.number().int().min(1).max(600).default(20),
      /** A metadata (JSON) body must have arrived whole within this, counted from its headers. */
      bodyTimeoutSeconds: z.number().int().min(1).max(3600).default(30),
      /** Uploads slower than this on average over `uploadRateWindowSeconds` are dropped; 0 turns it off. */
      minUploadBytesPerSecond: z.number().int().min(0).default(10_240),
      uploadRateWindowSeconds: z.number().int().min(1).max(3600).default(60),
      /** Open connections at once; default: what the open-file limit leaves room for (at most 10,000). */
      maxConnections: z.number().int().min(1).max(1_000_000).optional(),
      /** Open connections at once from one client address; 0 turns it off (behind a proxy). */
      maxConnectionsPerAddress: z.number().int().min(0).max(1_000_000).default(256),
    })
    .prefault({}),
  auth: z
    .strictObject({
      /** Off only for loopback development: every request is then treated as an admin's. */
      enabled: z.boolean().default(true),
      /** Accepted clock difference for signed requests, in seconds. */
      clockSkew: z.number().int().min(1).max(3600).default(300),
      /**
       * Key that seals user secrets in the catalog; relative to the data directory. Share it between servers that share
       * a catalog.
       */
      keyFile: z.string().min(1).default('credentials.key'),
    })
    .prefault({}),
  /** /metrics (Prometheus): open on loopback; beyond it, a bearer token or a signed request. */
  metrics: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Scrapers send `Authorization: Bearer <token>`; without one, /metrics needs a signed request. */
      token: z.string().min(16, 'at least 16 characters').optional(),
    })
    .prefault({}),
  /** /health/ready: how long the catalog and the default store get to answer. */
  readyTimeoutSeconds: z.number().min(0.1).max(60).default(2),
});

/**
 * The config file as written (after ${ENV} interpolation); plugin options are checked later, by each plugin's own
 * schema.
 */
export const configFileSchema = z.strictObject({
  version: z.literal(1, 'must be 1').optional(),
  dataDir: z.string().min(1).optional(),
  plugins: z.array(z.string()).default([]),
  logging: z
    .strictObject({
      level: z.enum(logLevels).default('info'),
      format: z.enum(['auto', 'json', 'text']).default('auto'),
    })
    .prefault({}),
  catalog: pluginInstanceSchema.default({ type: 'sqlite' }),
  stores: z.record(instanceName, storeInstanceSchema).default({ local: { type: 'file' } }),
  defaultStore: instanceName.optional(),
  server: serverSchema.prefault({}),
  agent: z
    .strictObject({
      /** Written into every image the agent creates in a cloud (the ownership marker). Default: the host name. */
      id: z
        .string()
        .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . and -, at most 64')
        .optional(),
      /** Actions at once across all clouds. */
      concurrency: z.number().int().min(1).max(256).default(4),
      /** How long a target's lease lasts without renewal (renewed while a run goes on). */
      leaseSeconds: z.number().int().min(10).max(3600).default(120),
      /** Where clouds that fetch images by URL (OpenNebula) reach this agent, e.g. http://agent.example:4568. */
      publicUrl: z
        .string()
        .regex(/^https?:\/\/[^\s/]+/, 'must be an http(s) URL')
        .optional(),
      /** Scratch space for format conversion; default <dataDir>/cache. */
      cacheDir: z.string().min(1).optional(),
      /** How often the agent reads the catalog's change feed (clouds' `sync.triggers`): one cheap query each time. */
      changePoll: duration.default(1000).refine((ms) => ms >= 100 && ms <= 60_000, 'must be from 100ms to 60s'),
      /** Run records kept per target. */
      keepRuns: z.number().int().min(1).max(100_000).default(200),
      /** On SIGTERM, runs in flight get this long to finish before they are aborted (and clean up). */
      stopGraceSeconds: z.number().int().min(1).max(3600).default(60),
      /** /health/ready fails when this many runs in a row of one cloud failed. */
      unreadyAfterFailures: z.number().int().min(1).max(1000).default(3),
    })
    .prefault({}),
  clouds: z.record(instanceName, cloudSchema).default({}),
  /** The life cycle of catalog images (docs/lifecycle.md). */
  lifecycle: z
    .strictObject({
      /** How long a deleted image is kept, bits included, restorable with `visor restore` (7d; 0: deleted at once). */
      softDelete: duration.default(defaultSoftDeleteMs),
      /** How often `visor serve` applies due deprecation dates and purges expired deleted images. */
      sweepEvery: duration.default(60_000).refine((ms) => ms >= 1000, 'must be at least 1s'),
    })
    .prefault({}),
  subscriptions: z.record(instanceName, subscriptionSchema).default({}),
  /** Where the agent POSTs lifecycle events (HMAC-signed): image imported, failed, retired; run failed. */
  webhooks: z.array(webhookSchema).default([]),
});

export type ConfigFile = z.infer<typeof configFileSchema>;
