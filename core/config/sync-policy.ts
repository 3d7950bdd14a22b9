import { validate as validateCron } from 'node-cron';
import { z } from 'zod';
import { accessLevels, diskFormats } from '../image/model.js';
import { byteSize } from './byte-size.js';
import { propertyKeyPattern } from '../image/schema.js';

/**
 * Per-cloud sync policy (DESIGN.md §5): which catalog images go to the cloud and how they are
 * translated, how copies that are no longer wanted are retired, whether the cloud's own images
 * are imported, when the agent runs, and how hard it tries.
 */

export const duration = z
  .union([z.number().int().min(0), z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration like 30s, 10m, 2h or 7d')])
  .transform((value) => (typeof value === 'number' ? value * 1000 : toMs(value)));

export function toMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw new Error(`bad duration ${text}`);
  const n = Number(match[1]);
  return n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
}

export const namingPlaceholders = [
  'name',
  'id',
  'shortId',
  'architecture',
  'format',
  'os_distro',
  'os_version',
  'revision',
] as const;

export const syncPolicySchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Cron expression (node-cron, 5 or 6 fields); without it the target syncs only when asked. */
  schedule: z
    .string()
    .refine((expr) => validateCron(expr), 'must be a cron expression, e.g. "*/30 * * * *" (every 30 minutes)')
    .optional(),
  /**
   * Syncs besides the schedule: a catalog change (add, update, delete, deprecate) to an image this
   * cloud's selector picks (before or after the change) starts a run once the catalog has been quiet
   * for `debounce`, or `maxDelay` after the first such change at the latest: a burst is one run.
   */
  triggers: z
    .strictObject({
      onChange: z.boolean().default(true),
      debounce: duration.default(2000),
      maxDelay: duration.default(10_000),
    })
    .refine((t) => t.maxDelay >= t.debounce, {
      message: 'maxDelay must not be shorter than debounce',
      path: ['maxDelay'],
    })
    .prefault({}),
  /** Which catalog images go to this cloud; every condition must hold. */
  selector: z
    .strictObject({
      names: z.array(z.string().min(1)).min(1).optional().describe('name globs (* and ?); any may match'),
      tags: z.array(z.string().min(1)).optional().describe('tags the image must all have'),
      properties: z
        .record(z.string().regex(propertyKeyPattern), z.string())
        .optional()
        .describe('custom properties that must equal these values'),
      access: z.array(z.enum(accessLevels)).min(1).default(['public']),
      architectures: z.array(z.string().min(1)).optional(),
    })
    .prefault({}),
  /**
   * Name in the cloud; placeholders in braces: {name} {id} {shortId} {architecture} {format} {os_distro} {os_version}
   * {revision}.
   */
  naming: z
    .string()
    .min(1)
    .default('{name}')
    .refine(
      (template) =>
        [...template.matchAll(/\{([^}]*)\}/g)].every((m) =>
          (namingPlaceholders as readonly string[]).includes(m[1] ?? ''),
        ),
      `placeholders are ${namingPlaceholders.map((p) => `{${p}}`).join(' ')}`,
    ),
  /**
   * Catalog access -> access in the cloud. `shared` stays shared (its members get the image, see
   * `sharing`); a cloud without that level gets the most private one it has, never a wider one.
   */
  visibility: z
    .strictObject({
      public: z.enum(accessLevels).default('public'),
      private: z.enum(accessLevels).default('private'),
      shared: z.enum(accessLevels).default('shared'),
    })
    .prefault({}),
  /** Who a shared image is shared with in this cloud (the adapter's README says what a principal is). */
  sharing: z
    .strictObject({
      /** Catalog member (user or group, e.g. a virtual organisation) -> this cloud's principal(s). */
      members: z
        .record(z.string().min(1), z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]))
        .default({})
        .describe('catalog member or group -> Glance project id, OpenNebula group, EC2 account id'),
      /** Principals every shared image this target selects is shared with, besides its mapped members. */
      shareWith: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
  /** Disk format in the cloud: `auto` keeps the image's format when the cloud accepts it, else converts. */
  diskFormat: z.enum(['auto', ...diskFormats]).default('auto'),
  retire: z
    .strictObject({
      mode: z.enum(['hide', 'disable', 'delete']).default('hide'),
      /** With mode delete: hide (or disable) first, delete after this long. */
      grace: duration.default(0),
    })
    .prefault({}),
  /** Image families (an image's `family`): how many versions this cloud keeps, and a stable name for the latest. */
  families: z
    .strictObject({
      /** The newest N versions of each family are kept here; older ones are retired (the latest always stays). */
      keep: z.number().int().min(1).max(1000).optional(),
      /** Name of the latest version's copy, e.g. "{family}-latest"; only {family} is a placeholder. */
      latestName: z
        .string()
        .min(1)
        .max(255)
        .refine(
          (t) => [...t.matchAll(/\{([^}]*)\}/g)].every((m) => m[1] === 'family'),
          'the only placeholder is {family}',
        )
        .optional(),
    })
    .prefault({}),
  /** Deprecated images: how an obsolete image is taken out of sight (the other mode where the cloud lacks this one). */
  lifecycle: z.strictObject({ obsolete: z.enum(['hide', 'disable']).default('hide') }).prefault({}),
  /** The cloud's own (unmarked) images: leave them (off), or copy them into the catalog. */
  import: z.enum(['off', 'metadata', 'full']).default('off'),
  /** Mark an unmarked cloud image as ours when its content equals a catalog image's (instead of uploading a copy). */
  adopt: z.boolean().default(false),
  /** Actions at once on this cloud: transfers to (and imports from) it included. */
  concurrency: z.number().int().min(1).max(64).default(2),
  /** Bytes per second over all transfers to (and imports from) this cloud together, e.g. "20MiB" (default: none). */
  maxBandwidth: byteSize.refine((n) => n > 0, 'must be more than 0 (leave it out for no limit)').optional(),
  timeouts: z
    .strictObject({
      /** One action (an upload included). */
      action: duration.default(6 * 3_600_000),
      /** Listing the cloud. */
      list: duration.default(120_000),
    })
    .prefault({}),
  retries: z
    .strictObject({
      attempts: z.number().int().min(1).max(20).default(3),
      /** First backoff; doubled each time, with jitter. */
      backoff: duration.default(2000),
    })
    .prefault({}),
});

export type SyncPolicy = z.infer<typeof syncPolicySchema>;
