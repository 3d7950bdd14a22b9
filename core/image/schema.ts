import { z } from 'zod';
import {
  accessLevels,
  architectures,
  deprecationStates,
  containerFormats,
  deferredChecksums,
  diskFormats,
  imageStatuses,
  imageTypes,
} from './model.js';

/** Canonical (lower-case) UUID; ids are compared as strings everywhere. */
export const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/**
 * Custom property keys: no dots or `$` (they would be paths or operators in MongoDB), and no
 * leading underscore (reserved for VISOR's `_id`).
 */
export const propertyKeyPattern = /^[A-Za-z][A-Za-z0-9_:-]{0,254}$/;
export const storeNamePattern = /^[a-z][a-z0-9_-]{0,62}$/;

// Printable text without control characters: names end up in terminals, logs and XML documents.
const text = (max: number) =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters')
    .refine(wellFormed, 'must be valid Unicode (no unpaired surrogates)');

/** Text every cloud and store can carry: JSON escapes can produce unpaired surrogates, which UTF-8 cannot encode. */
function wellFormed(s: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

/**
 * What a property value must be (importers drop the values that are not). Free-form text, control characters included,
 * but storable.
 */
export function isValidPropertyValue(value: string): boolean {
  return value.length <= 65535 && wellFormed(value);
}

const propertyValue = z
  .string()
  .max(65535, 'must be at most 65535 characters')
  .refine(wellFormed, 'must be valid Unicode (no unpaired surrogates)');

const hex = (length: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${length}}$`), `must be ${length} lower-case hex digits`);
const count = z.number().int('must be an integer').min(0, 'must not be negative').max(Number.MAX_SAFE_INTEGER);
const timestamp = z.iso.datetime({ offset: true, message: 'must be an ISO-8601 date-time' });
const uuid = z.string().regex(uuidPattern, 'must be a lower-case UUID');

export const deprecationSchema = z.strictObject({
  state: z.enum(deprecationStates),
  replacement: uuid.optional(),
  since: timestamp,
  obsoleteOn: timestamp.optional(),
  deleteOn: timestamp.optional(),
});

/** Family names: what GCE allows (lower-case letters, digits, hyphens), a little longer. */
export const familyPattern = /^[a-z](?:[a-z0-9-]{0,126}[a-z0-9])?$/;

export const checksumsSchema = z.strictObject({
  md5: hex(32).optional(),
  sha256: hex(64).optional(),
  sha512: hex(128).optional(),
});
const checksumsPendingSchema = z
  .array(z.enum(deferredChecksums))
  .min(1, 'must name at least one digest (or be absent)')
  .refine((list) => new Set(list).size === list.length, 'must not repeat a digest');
export const osSchema = z.strictObject({
  type: text(64).optional(),
  distro: text(64).optional(),
  version: text(64).optional(),
});
export const locationSchema = z.strictObject({
  store: z.string().regex(storeNamePattern, 'must be a store name (lower-case letters, digits, _ and -)'),
  uri: text(4096),
});

/** Field names a custom property must not take: the generic fields and VISOR's wire names. */
export const reservedPropertyKeys: ReadonlySet<string> = new Set([
  'id',
  'name',
  'architecture',
  'diskFormat',
  'containerFormat',
  'type',
  'kernelId',
  'ramdiskId',
  'access',
  'members',
  'owner',
  'status',
  'size',
  'virtualSize',
  'checksums',
  'checksum',
  'checksumsPending',
  'checksums_pending',
  'minDisk',
  'minRam',
  'os',
  'tags',
  'properties',
  'location',
  'createdAt',
  'updatedAt',
  'uploadedAt',
  'revision',
  'store',
  'uri',
  'format',
  'kernel',
  'ramdisk',
  'disk_format',
  'container_format',
  'kernel_id',
  'ramdisk_id',
  'virtual_size',
  'min_disk',
  'min_ram',
  'created_at',
  'updated_at',
  'uploaded_at',
  'accessed_at',
  'access_count',
  'sort',
  'dir',
  'limit',
  'marker',
  'family',
  'excludeFromLatest',
  'protected',
  'deprecation',
  'deletedAt',
  'purgeAfter',
  'exclude_from_latest',
  'deleted_at',
  'purge_after',
]);

const propertyKey = z
  .string()
  .regex(propertyKeyPattern, 'property names start with a letter and use letters, digits, _ : and - (at most 255)')
  .refine((key) => !reservedPropertyKeys.has(key), 'is a reserved field name');

export const propertiesSchema = z
  .record(propertyKey, propertyValue)
  .refine((props) => Object.keys(props).length <= 256, 'at most 256 custom properties');

export const tagsSchema = z
  .array(text(255))
  .max(128, 'at most 128 tags')
  .refine((tags) => new Set(tags).size === tags.length, 'must not repeat a tag');

const fields = {
  id: uuid,
  name: text(255),
  architecture: z.enum(architectures),
  diskFormat: z.enum(diskFormats),
  containerFormat: z.enum(containerFormats),
  type: z.enum(imageTypes),
  kernelId: uuid,
  ramdiskId: uuid,
  access: z.enum(accessLevels),
  members: z.array(text(255)).max(1024, 'at most 1024 members'),
  owner: text(255),
  status: z.enum(imageStatuses),
  size: count,
  virtualSize: count,
  checksums: checksumsSchema,
  checksumsPending: checksumsPendingSchema,
  minDisk: count,
  minRam: count,
  os: osSchema,
  tags: tagsSchema,
  properties: propertiesSchema,
  location: locationSchema,
  createdAt: timestamp,
  updatedAt: timestamp,
  uploadedAt: timestamp,
  family: z.string().regex(familyPattern, 'lower-case letters, digits and -, starting with a letter (at most 128)'),
  excludeFromLatest: z.boolean(),
  protected: z.boolean(),
  deprecation: deprecationSchema,
  deletedAt: timestamp,
  purgeAfter: timestamp,
  revision: z.number().int().min(1),
};

/** Rules that involve more than one field; applied to whole images. */
interface CrossFields {
  type?: string | undefined;
  kernelId?: string | undefined;
  ramdiskId?: string | undefined;
  status?: string | undefined;
  location?: unknown;
  access?: string | undefined;
  members?: unknown[] | undefined;
  id?: string | undefined;
  deprecation?: { replacement?: string | undefined } | undefined;
  deletedAt?: string | undefined;
}

function crossFieldRules(image: CrossFields, ctx: z.RefinementCtx): void {
  if (image.type !== undefined && image.type !== 'machine') {
    for (const key of ['kernelId', 'ramdiskId'] as const) {
      if (image[key] !== undefined)
        ctx.addIssue({ code: 'custom', path: [key], message: `only a machine image can name a ${key.slice(0, -2)}` });
    }
  }
  if (image.status === 'available' && image.location === undefined) {
    ctx.addIssue({ code: 'custom', path: ['location'], message: 'an available image must have a location' });
  }
  if (image.deprecation?.replacement !== undefined && image.deprecation.replacement === image.id) {
    ctx.addIssue({ code: 'custom', path: ['deprecation', 'replacement'], message: 'an image cannot replace itself' });
  }
  if (image.deletedAt !== undefined && image.status !== 'deleted') {
    ctx.addIssue({ code: 'custom', path: ['deletedAt'], message: 'only a deleted image has a deletion time' });
  }
  if (image.access !== undefined && image.access !== 'shared' && (image.members?.length ?? 0) > 0) {
    ctx.addIssue({ code: 'custom', path: ['members'], message: 'only a shared image has members' });
  }
}

export const imageSchema = z
  .strictObject({
    ...fields,
    diskFormat: fields.diskFormat.optional(),
    containerFormat: fields.containerFormat.optional(),
    kernelId: fields.kernelId.optional(),
    ramdiskId: fields.ramdiskId.optional(),
    owner: fields.owner.optional(),
    size: fields.size.optional(),
    virtualSize: fields.virtualSize.optional(),
    checksumsPending: fields.checksumsPending.optional(),
    minDisk: fields.minDisk.optional(),
    minRam: fields.minRam.optional(),
    os: fields.os.optional(),
    location: fields.location.optional(),
    uploadedAt: fields.uploadedAt.optional(),
    family: fields.family.optional(),
    excludeFromLatest: fields.excludeFromLatest.optional(),
    protected: fields.protected.optional(),
    deprecation: fields.deprecation.optional(),
    deletedAt: fields.deletedAt.optional(),
    purgeAfter: fields.purgeAfter.optional(),
  })
  .superRefine(crossFieldRules);

/** What `newImage` accepts: name and architecture are mandatory (as in VISOR), the rest optional. */
export const imageDraftSchema = z.strictObject({
  ...Object.fromEntries(
    Object.entries(fields)
      .filter(([key]) => !['revision', 'createdAt', 'updatedAt', 'deletedAt', 'purgeAfter'].includes(key))
      .map(([key, schema]) => [key, schema.optional()]),
  ),
  name: fields.name,
  architecture: fields.architecture,
});

const nullable = <T extends z.ZodType>(schema: T) => schema.nullable().optional();

/** A change set: optional fields may be cleared with null; properties merge key by key. */
export const imageChangesSchema = z.strictObject({
  name: fields.name.optional(),
  architecture: fields.architecture.optional(),
  diskFormat: nullable(fields.diskFormat),
  containerFormat: nullable(fields.containerFormat),
  type: fields.type.optional(),
  kernelId: nullable(fields.kernelId),
  ramdiskId: nullable(fields.ramdiskId),
  access: fields.access.optional(),
  members: fields.members.optional(),
  owner: nullable(fields.owner),
  status: fields.status.optional(),
  size: nullable(fields.size),
  virtualSize: nullable(fields.virtualSize),
  checksums: fields.checksums.optional(),
  checksumsPending: nullable(fields.checksumsPending),
  minDisk: nullable(fields.minDisk),
  minRam: nullable(fields.minRam),
  os: nullable(fields.os),
  tags: fields.tags.optional(),
  properties: z.record(propertyKey, propertyValue.nullable()).optional(),
  location: nullable(fields.location),
  uploadedAt: nullable(fields.uploadedAt),
  family: nullable(fields.family),
  excludeFromLatest: nullable(fields.excludeFromLatest),
  protected: nullable(fields.protected),
  deprecation: nullable(fields.deprecation),
  deletedAt: nullable(fields.deletedAt),
  purgeAfter: nullable(fields.purgeAfter),
});
