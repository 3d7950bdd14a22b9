import { z } from 'zod';
import { ValidationError, VisorError } from '../errors.js';
import { zodIssues } from '../validation.js';
import type { User } from './port.js';

export const userNamePattern = /^[a-z][a-z0-9._-]{0,63}$/;

const userSchema = z.strictObject({
  /**
   * Stable: images name their owner and members by it, so a user removed and re-created under
   * the same name is someone else.
   */
  id: z.uuid(),
  name: z
    .string()
    .regex(
      userNamePattern,
      'user names are lower-case letters, digits, . _ and -, starting with a letter (at most 64)',
    ),
  accessKey: z.string().regex(/^[A-Z0-9]{20}$/, 'must be 20 upper-case letters and digits'),
  sealedSecret: z.string().min(1),
  admin: z.boolean(),
  createdAt: z.iso.datetime({ offset: true }),
});

export function validateUser(value: unknown): User {
  const result = userSchema.safeParse(value);
  if (!result.success) throw new ValidationError('invalidInput', 'invalid user', zodIssues(result.error));
  return result.data;
}

export function userNotFound(name: string): VisorError {
  return new VisorError('notFound', `no user named ${name}`, { details: { name } });
}

export function userExists(user: Pick<User, 'name'>): VisorError {
  const message = `a user named ${user.name} (or with the same access key or id) already exists`;
  return new VisorError('conflict', message, { details: { name: user.name } });
}

/** State key recording that a catalog's image owners and members were turned from user names into user ids. */
export const OWNER_IDS_MIGRATION = 'catalog:migration:owner-ids';
