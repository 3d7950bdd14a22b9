import { z } from 'zod';
import { VisorError } from '../../core/errors.js';
import { zodIssues } from '../../core/validation.js';

/**
 * Validation of what the cloud sends: the EC2 Query outputs as @aws-sdk/client-ec2 parses them
 * (the SDK leaves every field optional; the 2010-08-31 WSDL marks imageId, imageState,
 * imageOwnerId and isPublic required), and bundle manifests read back from Walrus. A response
 * that misses what we need is an `invalidResponse`, never a silent default.
 */

/**
 * imageState values: AWS's list (pending, available, invalid, deregistered, transient, failed,
 * error, disabled) plus Eucalyptus's non-standard `hidden` and `unavailable` (ImageMetadata.State).
 */
export const ec2ImageStates = ['pending', 'available', 'invalid', 'deregistered', 'transient', 'failed', 'error', 'disabled', 'hidden', 'unavailable'] as const;
export type Ec2ImageState = (typeof ec2ImageStates)[number];
export const ec2ImageTypes = ['machine', 'kernel', 'ramdisk'] as const;
export type Ec2ImageType = (typeof ec2ImageTypes)[number];

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

const tagSchema = z.object({ Key: z.string().min(1, 'a tag must have a key'), Value: z.string().optional() });

export const ec2ImageSchema = z
  .object({
    ImageId: z.string().min(1, 'must not be empty'),
    ImageLocation: optionalText,
    State: z.enum(ec2ImageStates, { error: (i) => `is "${String(i.input)}", not an image state (${ec2ImageStates.join(', ')})` }),
    OwnerId: z.string().min(1, 'must not be empty'),
    Public: z.boolean({ error: 'must be true or false (isPublic)' }),
    Architecture: optionalText,
    ImageType: z.enum(ec2ImageTypes).optional(),
    KernelId: optionalText,
    RamdiskId: optionalText,
    Platform: optionalText,
    Name: optionalText,
    Description: optionalText,
    RootDeviceType: optionalText,
    RootDeviceName: optionalText,
    VirtualizationType: optionalText,
    CreationDate: optionalText,
    StateReason: z.object({ Code: optionalText, Message: optionalText }).optional(),
    Tags: z.array(tagSchema).optional(),
  })
  .transform((i) => ({
    id: i.ImageId,
    location: i.ImageLocation,
    state: i.State,
    ownerId: i.OwnerId,
    isPublic: i.Public,
    architecture: i.Architecture,
    type: i.ImageType,
    kernelId: i.KernelId,
    ramdiskId: i.RamdiskId,
    platform: i.Platform,
    name: i.Name,
    description: i.Description,
    rootDeviceType: i.RootDeviceType,
    rootDeviceName: i.RootDeviceName,
    virtualizationType: i.VirtualizationType,
    createdAt: i.CreationDate,
    stateReason: i.StateReason?.Message ?? i.StateReason?.Code,
    // A repeated key keeps its last value, as EC2 itself would after overwriting.
    tags: Object.fromEntries((i.Tags ?? []).map((t) => [t.Key, t.Value ?? ''])) as Record<string, string>,
  }));

/** An EC2 image in the adapter's own terms. */
export type Ec2Image = z.output<typeof ec2ImageSchema>;

export const describeImagesOutput = z.object({ Images: z.array(z.unknown()).optional(), NextToken: optionalText });
export const registerImageOutput = z.object({ ImageId: z.string().min(1, 'RegisterImage returned no imageId') });
export const describeTagsOutput = z.object({
  Tags: z
    .array(z.object({ ResourceId: z.string().min(1), ResourceType: optionalText, Key: z.string().min(1), Value: z.string().optional() }))
    .optional(),
  NextToken: optionalText,
});
export const launchPermissionsOutput = z.object({
  LaunchPermissions: z
    .array(z.object({ Group: optionalText, UserId: optionalText }).refine((p) => p.Group !== undefined || p.UserId !== undefined, 'a launch permission names a group or a user'))
    .optional(),
});

/** Validates an SDK output; `what` names the call in the error. */
export function parseEc2<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = zodIssues(result.error);
  throw new VisorError('invalidResponse', `ec2: ${what} is malformed: ${issues.slice(0, 5).map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`, {
    details: { issues },
  });
}

/** One image from DescribeImages; the index names it in errors. */
export function parseEc2Image(value: unknown, index: number): Ec2Image {
  return parseEc2(ec2ImageSchema, value, `DescribeImages item ${index}`);
}

// ---------------------------------------------------------------------------------------------
// Bundle manifest (2007-10-10), as fast-xml-parser reads it with every value kept as text
// ---------------------------------------------------------------------------------------------

const hexText = (what: string) => z.string().regex(/^[0-9a-fA-F]+$/, `${what} must be hex`).transform((s) => s.toLowerCase());
const sha1Text = z.string().regex(/^[0-9a-fA-F]{40}$/, 'must be a hex SHA1 digest').transform((s) => s.toLowerCase());
const countText = z.string().regex(/^\d{1,15}$/, 'must be a byte count').transform(Number);
const withAttr = <T extends z.ZodType>(inner: T) => z.object({ '#text': inner, '@_algorithm': z.string().optional() });

const manifestPartSchema = z.object({
  '@_index': z.string().regex(/^\d{1,6}$/).transform(Number),
  filename: z.string().regex(/^[^/\\]+$/, 'must be a plain file name'),
  digest: withAttr(sha1Text),
});

export const manifestSchema = z.object({
  manifest: z.object({
    version: z.literal('2007-10-10', { error: 'must be 2007-10-10' }),
    machine_configuration: z.object({
      architecture: z.string().optional(),
      kernel_id: z.string().optional(),
      ramdisk_id: z.string().optional(),
    }),
    image: z.object({
      name: z.string().min(1),
      user: z.string().min(1),
      type: z.enum(ec2ImageTypes),
      digest: withAttr(sha1Text),
      size: countText,
      bundled_size: countText,
      ec2_encrypted_key: withAttr(hexText('ec2_encrypted_key')),
      user_encrypted_key: withAttr(hexText('user_encrypted_key')),
      ec2_encrypted_iv: z.union([hexText('ec2_encrypted_iv'), withAttr(hexText('ec2_encrypted_iv')).transform((v) => v['#text'])]),
      user_encrypted_iv: z.union([hexText('user_encrypted_iv'), withAttr(hexText('user_encrypted_iv')).transform((v) => v['#text'])]),
      parts: z.object({ '@_count': z.string().regex(/^\d{1,6}$/).transform(Number), part: z.array(manifestPartSchema).min(1) }),
    }),
    signature: z.string().regex(/^[0-9a-fA-F]+$/, 'must be a hex RSA-SHA1 signature'),
  }),
});
export type ParsedManifest = z.output<typeof manifestSchema>['manifest'];
