import { z } from 'zod';
import { VisorError } from '../../core/errors.js';
import { zodIssues } from '../../core/validation.js';
import { parseOneDocument } from './schema-xml.js';

/**
 * Validation of what oned sends: the XML-RPC reply array and the IMAGE, IMAGE_POOL and
 * DATASTORE_POOL documents (share/doc/xsd/*.xsd). Both generations are accepted: 5.x documents
 * carry FSTYPE and no MODTIME/FORMAT/FS, 6.x+ carry FORMAT, FS, MODTIME (7.0), PREV_STATE,
 * LOCK and BACKUP_INCREMENTS. Anything else malformed is an `invalidResponse`.
 */

const int = z
  .string()
  .regex(/^-?\d{1,18}$/, 'must be an integer')
  .transform(Number);
const flag = z.enum(['0', '1']).transform((v) => v === '1');
const text = z.string();
/** `<VMS></VMS>` parses as '' and `<VMS><ID>1</ID></VMS>` as { ID: ['1'] }. */
const ids = z.union([z.literal(''), z.object({ ID: z.array(int) })]).transform((v) => (v === '' ? [] : v.ID));
/** Free-form TEMPLATE: single attributes are strings; vector and repeated attributes are kept as parsed. */
const template = z.union([z.literal(''), z.record(z.string(), z.unknown())]).transform((v) => (v === '' ? {} : v));

export const permissionsSchema = z.object({
  OWNER_U: flag,
  OWNER_M: flag,
  OWNER_A: flag,
  GROUP_U: flag,
  GROUP_M: flag,
  GROUP_A: flag,
  OTHER_U: flag,
  OTHER_M: flag,
  OTHER_A: flag,
});
export type OnePermissions = z.output<typeof permissionsSchema>;

/** Image states (include/Image.h ImageState; image.xsd comment). */
export const oneImageStates = {
  INIT: 0,
  READY: 1,
  USED: 2,
  DISABLED: 3,
  LOCKED: 4,
  ERROR: 5,
  CLONE: 6,
  DELETE: 7,
  USED_PERS: 8,
  LOCKED_USED: 9,
  LOCKED_USED_PERS: 10,
} as const;

/** Image types (include/Image.h ImageType); templates use the names. */
export const oneImageTypes = [
  'OS',
  'CDROM',
  'DATABLOCK',
  'KERNEL',
  'RAMDISK',
  'CONTEXT',
  'BACKUP',
  'FILESYSTEM',
] as const;
export type OneImageTypeName = (typeof oneImageTypes)[number];

const imageSchema = z
  .object({
    ID: int,
    UID: int,
    GID: int,
    UNAME: text,
    GNAME: text,
    NAME: z.string().min(1, 'must not be empty'),
    PERMISSIONS: permissionsSchema,
    TYPE: int,
    DISK_TYPE: int,
    PERSISTENT: flag,
    REGTIME: int,
    MODTIME: int.optional(),
    SOURCE: text,
    PATH: text.optional(),
    FORMAT: text.optional(),
    FSTYPE: text.optional(),
    SIZE: int,
    STATE: int.pipe(z.number().min(0).max(10, 'is not an image state this adapter knows (0-10)')),
    RUNNING_VMS: int,
    DATASTORE_ID: int,
    DATASTORE: text,
    VMS: ids,
    TEMPLATE: template,
  })
  .transform((i) => ({
    id: i.ID,
    uid: i.UID,
    gid: i.GID,
    uname: i.UNAME,
    gname: i.GNAME,
    name: i.NAME,
    permissions: i.PERMISSIONS,
    type: i.TYPE,
    diskType: i.DISK_TYPE,
    persistent: i.PERSISTENT,
    regtime: i.REGTIME,
    ...(i.MODTIME !== undefined ? { modtime: i.MODTIME } : {}),
    source: i.SOURCE,
    path: i.PATH ?? '',
    // FSTYPE is what 5.x called the disk format; 6.0 renamed it FORMAT (onedb 5.12.0_to_6.0.0.rb).
    format: i.FORMAT ?? i.FSTYPE ?? '',
    sizeMb: i.SIZE,
    state: i.STATE,
    runningVms: i.RUNNING_VMS,
    datastoreId: i.DATASTORE_ID,
    datastore: i.DATASTORE,
    vms: i.VMS,
    template: singleAttributes(i.TEMPLATE),
  }));

/** A validated IMAGE document in the adapter's own terms. */
export type OneImage = z.output<typeof imageSchema>;

/** Single attributes only: vector attributes (`DISK = [ ... ]`) and repeated keys are not generic metadata. */
function singleAttributes(tmpl: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(tmpl)) if (typeof value === 'string') out[key] = value;
  return out;
}

const datastoreSchema = z
  .object({
    ID: int,
    NAME: z.string().min(1),
    TYPE: int,
    STATE: int,
    BASE_PATH: text,
    TOTAL_MB: int,
    FREE_MB: int,
    USED_MB: int,
    TEMPLATE: template,
  })
  .transform((d) => ({
    id: d.ID,
    name: d.NAME,
    type: d.TYPE,
    state: d.STATE,
    basePath: d.BASE_PATH,
    totalMb: d.TOTAL_MB,
    freeMb: d.FREE_MB,
    usedMb: d.USED_MB,
    template: singleAttributes(d.TEMPLATE),
  }));
export type OneDatastore = z.output<typeof datastoreSchema>;

/** Datastore types (include/Datastore.h DatastoreType). */
export const oneDatastoreTypes = { IMAGE_DS: 0, SYSTEM_DS: 1, FILE_DS: 2, BACKUP_DS: 3 } as const;

const imageDocument = z.object({ IMAGE: imageSchema });
const imagePoolDocument = z.object({
  IMAGE_POOL: z
    .union([z.literal(''), z.object({ IMAGE: z.array(imageSchema) })])
    .transform((p) => (p === '' ? [] : p.IMAGE)),
});
const datastorePoolDocument = z.object({
  DATASTORE_POOL: z
    .union([z.literal(''), z.object({ DATASTORE: z.array(datastoreSchema) })])
    .transform((p) => (p === '' ? [] : p.DATASTORE)),
});

function validate<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = zodIssues(result.error)
    .slice(0, 5)
    .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
    .join('; ');
  throw new VisorError('invalidResponse', `opennebula: ${what} is malformed: ${issues}`, {
    details: { issues: zodIssues(result.error) },
  });
}

export function parseImage(xml: string): OneImage {
  return validate(imageDocument, parseOneDocument(xml, 'IMAGE document'), 'IMAGE document').IMAGE;
}

export function parseImagePool(xml: string): OneImage[] {
  return validate(imagePoolDocument, parseOneDocument(xml, 'IMAGE_POOL document'), 'IMAGE_POOL document').IMAGE_POOL;
}

export function parseDatastorePool(xml: string): OneDatastore[] {
  return validate(datastorePoolDocument, parseOneDocument(xml, 'DATASTORE_POOL document'), 'DATASTORE_POOL document')
    .DATASTORE_POOL;
}

/**
 * The reply array of every oned method (src/rm/xml-rpc/RequestXRPC.cc make_response):
 * success `[true, result, 0]`; failure `[false, message, code]` in 5.x and
 * `[false, message, code, object id, replication index (<i8>)]` since 6.x.
 */
export const replySchema = z.union([
  z.tuple([z.literal(true), z.union([z.string(), z.number().int()]), z.literal(0)]).rest(z.unknown()),
  z.tuple([z.literal(false), z.string(), z.number().int()]),
  z.tuple([
    z.literal(false),
    z.string(),
    z.number().int(),
    z.number().int(),
    z.union([z.string().regex(/^-?\d+$/), z.number().int()]),
  ]),
]);

export type OneReply = { ok: true; result: string | number } | { ok: false; message: string; code: number };

export function parseReply(value: unknown, method: string): OneReply {
  const reply = validate(replySchema, value, `the reply to ${method}`);
  return reply[0] ? { ok: true, result: reply[1] } : { ok: false, message: reply[1], code: reply[2] };
}
