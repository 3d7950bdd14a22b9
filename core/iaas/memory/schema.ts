import { z } from 'zod';
import { VisorError } from '../../errors.js';
import { zodIssues } from '../../validation.js';
import { nativeStatuses, type NativeImage } from './client.js';

/**
 * What the driver accepts from its cloud. A real cloud's answers come over the wire from a peer
 * that may be broken, old or hostile, so every adapter validates them before mapping (an answer
 * that misses what the driver relies on is `invalidResponse`, never a silent default). The
 * memory cloud cannot send garbage, but its records go through the same gate: the pattern is
 * the point, and a change to the cloud that breaks the mapper fails here, loudly.
 */
const text = z.string().min(1);
const digest = (length: number) => z.string().regex(new RegExp(`^[0-9a-f]{${length}}$`));

export const nativeImageSchema = z.looseObject({
  id: text,
  project: text,
  name: z.string(),
  status: z.enum(nativeStatuses),
  hidden: z.boolean(),
  visibility: z.enum(['public', 'private']),
  disk_format: text,
  container_format: text,
  size: z.number().int().nonnegative().optional(),
  md5: digest(32).optional(),
  sha256: digest(64).optional(),
  architecture: text.optional(),
  image_type: text.optional(),
  os_type: text.optional(),
  os_distro: text.optional(),
  os_version: text.optional(),
  min_disk: z.number().int().nonnegative().optional(),
  min_ram: z.number().int().nonnegative().optional(),
  virtual_size: z.number().int().nonnegative().optional(),
  tags: z.array(z.string()),
  properties: z.record(z.string(), z.string()),
  users: z.number().int().nonnegative(),
  created_at: text,
  updated_at: text,
});

/** Checks one record from the cloud; `what` names the call in the error. */
export function parseNativeImage(value: unknown, what: string): NativeImage {
  const parsed = nativeImageSchema.safeParse(value);
  if (parsed.success) return parsed.data as NativeImage;
  const issues = zodIssues(parsed.error);
  const summary = issues
    .slice(0, 5)
    .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
    .join('; ');
  throw new VisorError('invalidResponse', `${what}: the cloud's answer is malformed: ${summary}`, {
    details: { issues },
  });
}
