import { z } from 'zod';
import { VisorError } from '../../errors.js';
import { zodIssues } from '../../validation.js';

/**
 * Validation of the EC2 Query outputs as @aws-sdk/client-ec2 parses them (the SDK leaves every
 * field optional; the 2010-08-31 WSDL marks imageId, imageState, imageOwnerId and isPublic
 * required). A response that misses what we need is an `invalidResponse`, never a silent default.
 */

/**
 * imageState values: AWS's list (pending, available, invalid, deregistered, transient, failed,
 * error, disabled) plus Eucalyptus's non-standard `hidden` and `unavailable` (ImageMetadata.State).
 */
export const ec2ImageStates = [
  'pending',
  'available',
  'invalid',
  'deregistered',
  'transient',
  'failed',
  'error',
  'disabled',
  'hidden',
  'unavailable',
] as const;
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
    State: z.enum(ec2ImageStates, {
      error: (i) => `is "${String(i.input)}", not an image state (${ec2ImageStates.join(', ')})`,
    }),
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

/** An EC2 image in visor's own terms (what the adapters map to CloudImage). */
export type Ec2Image = z.output<typeof ec2ImageSchema>;

export const describeImagesOutput = z.object({ Images: z.array(z.unknown()).optional(), NextToken: optionalText });
export const registerImageOutput = z.object({ ImageId: z.string().min(1, 'RegisterImage returned no imageId') });
export const describeTagsOutput = z.object({
  Tags: z
    .array(
      z.object({
        ResourceId: z.string().min(1),
        ResourceType: optionalText,
        Key: z.string().min(1),
        Value: z.string().optional(),
      }),
    )
    .optional(),
  NextToken: optionalText,
});
export const launchPermissionsOutput = z.object({
  LaunchPermissions: z
    .array(
      z
        .object({ Group: optionalText, UserId: optionalText })
        .refine((p) => p.Group !== undefined || p.UserId !== undefined, 'a launch permission names a group or a user'),
    )
    .optional(),
});

/**
 * DescribeInstances: reservations, each with its instances (RunningInstancesItemType: instanceId and
 * instanceState required, imageId optional). Only what the in-use check needs is kept; a state
 * name outside EC2's list is kept as it is (and counts as in use: only `terminated` frees an image).
 */
const ec2InstanceSchema = z
  .object({
    InstanceId: z.string().min(1, 'must not be empty'),
    ImageId: optionalText,
    State: z.object({ Name: z.string().min(1, 'an instance state needs a name'), Code: z.number().optional() }),
  })
  .transform((i) => ({ id: i.InstanceId, imageId: i.ImageId, state: i.State.Name }));
export type Ec2Instance = z.output<typeof ec2InstanceSchema>;

export const describeInstancesOutput = z.object({
  Reservations: z.array(z.object({ Instances: z.array(ec2InstanceSchema).optional().default([]) })).optional(),
  NextToken: optionalText,
});

/** Validates an SDK output; `what` names the call in the error. */
export function parseEc2<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = zodIssues(result.error);
  throw new VisorError(
    'invalidResponse',
    `ec2: ${what} is malformed: ${issues
      .slice(0, 5)
      .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
      .join('; ')}`,
    {
      details: { issues },
    },
  );
}

/** One image from DescribeImages; the index names it in errors. */
export function parseEc2Image(value: unknown, index: number): Ec2Image {
  return parseEc2(ec2ImageSchema, value, `DescribeImages item ${index}`);
}
