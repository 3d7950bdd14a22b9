import { z } from 'zod';
import { ec2ImageTypes } from '../../core/wire/ec2/schema.js';

/**
 * Validation of what Walrus gives back: bundle manifests (2007-10-10), as fast-xml-parser reads
 * them with every value kept as text. A manifest that misses what we need is an
 * `invalidResponse`, never a silent default. The EC2 Query outputs are validated by the shared
 * EC2 wire code (core/wire/ec2/schema.ts).
 */

const hexText = (what: string) =>
  z
    .string()
    .regex(/^[0-9a-fA-F]+$/, `${what} must be hex`)
    .transform((s) => s.toLowerCase());
const sha1Text = z
  .string()
  .regex(/^[0-9a-fA-F]{40}$/, 'must be a hex SHA1 digest')
  .transform((s) => s.toLowerCase());
const countText = z
  .string()
  .regex(/^\d{1,15}$/, 'must be a byte count')
  .transform(Number);
const withAttr = <T extends z.ZodType>(inner: T) => z.object({ '#text': inner, '@_algorithm': z.string().optional() });

const manifestPartSchema = z.object({
  '@_index': z
    .string()
    .regex(/^\d{1,6}$/)
    .transform(Number),
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
      ec2_encrypted_iv: z.union([
        hexText('ec2_encrypted_iv'),
        withAttr(hexText('ec2_encrypted_iv')).transform((v) => v['#text']),
      ]),
      user_encrypted_iv: z.union([
        hexText('user_encrypted_iv'),
        withAttr(hexText('user_encrypted_iv')).transform((v) => v['#text']),
      ]),
      parts: z.object({
        '@_count': z
          .string()
          .regex(/^\d{1,6}$/)
          .transform(Number),
        part: z.array(manifestPartSchema).min(1),
      }),
    }),
    signature: z.string().regex(/^[0-9a-fA-F]+$/, 'must be a hex RSA-SHA1 signature'),
  }),
});
export type ParsedManifest = z.output<typeof manifestSchema>['manifest'];

/** Canned ACLs of bundle objects; `none` sends no x-amz-acl (services that refuse aws-exec-read). */
export const bundleAcls = ['aws-exec-read', 'private', 'public-read', 'ec2-bundle-read', 'none'] as const;
export type BundleAcl = (typeof bundleAcls)[number];
