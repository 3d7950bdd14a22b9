import { z } from 'zod';
import { VisorError } from '../../core/errors.js';
import { zodIssues } from '../../core/validation.js';

/**
 * The Glance v2 and Keystone v3 payloads this adapter reads, checked at the edge: a response
 * that does not fit is an `invalidResponse` error, never a crash further in. Schemas are
 * loose objects on purpose: Glance adds base fields in new API versions and every image
 * carries free-form properties next to them; only the fields we read are pinned down.
 */

const nullableString = z.string().nullable().optional();
const nullableCount = z.number().int().min(0).nullable().optional();

export const glanceImageStatuses = [
  'queued',
  'saving',
  'uploading',
  'importing',
  'active',
  'deactivated',
  'killed',
  'deleted',
  'pending_delete',
] as const;

/** An image entity (GET /v2/images/{id}, POST /v2/images, PATCH, and each item of a list). */
export const glanceImageSchema = z.looseObject({
  id: z.string().min(1),
  name: nullableString,
  status: z.enum(glanceImageStatuses),
  visibility: z.enum(['public', 'private', 'shared', 'community']),
  protected: z.boolean().optional(),
  os_hidden: z.boolean().optional(),
  checksum: nullableString,
  os_hash_algo: nullableString,
  os_hash_value: nullableString,
  owner: nullableString,
  size: nullableCount,
  virtual_size: nullableCount,
  min_disk: nullableCount,
  min_ram: nullableCount,
  disk_format: nullableString,
  container_format: nullableString,
  tags: z.array(z.string()).optional(),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
});
export type GlanceImage = z.infer<typeof glanceImageSchema>;

/** GET /v2/images: `next` is absent on the last page. */
export const glanceImagesPageSchema = z.looseObject({
  images: z.array(glanceImageSchema),
  next: z.string().optional(),
  first: z.string().optional(),
});
export type GlanceImagesPage = z.infer<typeof glanceImagesPageSchema>;

/** GET /v2/info/import. */
export const glanceImportInfoSchema = z.looseObject({
  'import-methods': z.looseObject({ value: z.array(z.string()) }),
});

/** GET /v2/images/{id}/tasks (API 2.12): read for the message of a failed import only. */
export const glanceImageTasksSchema = z.looseObject({
  tasks: z.array(
    z.looseObject({
      status: z.string(),
      message: z.string().nullable().optional(),
      updated_at: z.string().nullable().optional(),
    }),
  ),
});

export const glanceMemberStatuses = ['pending', 'accepted', 'rejected'] as const;

/** An image member (POST and PUT /v2/images/{id}/members[/{member}], and each item of a listing). */
export const glanceMemberSchema = z.looseObject({
  image_id: z.string().min(1),
  member_id: z.string().min(1),
  status: z.enum(glanceMemberStatuses),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
});
export type GlanceMember = z.infer<typeof glanceMemberSchema>;

/** GET /v2/images/{id}/members. */
export const glanceMembersSchema = z.looseObject({ members: z.array(glanceMemberSchema) });

export const keystoneInterfaces = ['public', 'internal', 'admin'] as const;
export type KeystoneInterface = (typeof keystoneInterfaces)[number];

export const keystoneEndpointSchema = z.looseObject({
  interface: z.string(),
  url: z.string().min(1),
  region: z.string().nullable().optional(),
  region_id: z.string().nullable().optional(),
});

export const keystoneCatalogEntrySchema = z.looseObject({
  type: z.string(),
  name: z.string().optional(),
  endpoints: z.array(keystoneEndpointSchema),
});
export type KeystoneCatalogEntry = z.infer<typeof keystoneCatalogEntrySchema>;

const named = z.looseObject({ id: z.string(), name: z.string().optional() });

/** POST /v3/auth/tokens (201); the token itself is the X-Subject-Token header. */
export const keystoneTokenResponseSchema = z.looseObject({
  token: z.looseObject({
    expires_at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 date-time'),
    issued_at: z.string().optional(),
    methods: z.array(z.string()),
    user: named.optional(),
    project: named.optional(),
    roles: z.array(named).optional(),
    catalog: z.array(keystoneCatalogEntrySchema).optional(),
  }),
});
export type KeystoneTokenResponse = z.infer<typeof keystoneTokenResponseSchema>;

/** Parses a peer's payload; a mismatch names the call and every bad field. */
export function parsePayload<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = zodIssues(result.error)
    .slice(0, 5)
    .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
    .join('; ');
  throw new VisorError('invalidResponse', `${what}: unexpected response (${issues})`, {
    details: { issues: zodIssues(result.error) },
  });
}
