import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import type { User, UserRepository } from '../../core/catalog/port.js';
import { validateUser } from '../../core/catalog/users.js';
import type { SecretBox } from '../../core/auth/secret-box.js';
import type { Clock } from '../../core/image/image.js';
import { systemClock } from '../../core/image/image.js';

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** 20 characters, as AWS access key ids: easy to spot, safe in headers. */
export function newAccessKey(): string {
  return Array.from({ length: 20 }, () => alphabet[randomInt(alphabet.length)]).join('');
}

/** 40 characters of base64url: 240 bits. */
export function newSecretKey(): string {
  return randomBytes(30).toString('base64url');
}

export interface NewCredentials {
  id: string;
  name: string;
  accessKey: string;
  secretKey: string;
  admin: boolean;
}

/** Creates a user; the secret is shown once, here, and stored only sealed. */
export async function addUser(
  users: UserRepository,
  box: SecretBox,
  name: string,
  admin: boolean,
  clock: Clock = systemClock,
): Promise<NewCredentials> {
  const secretKey = newSecretKey();
  const user: User = validateUser({
    id: randomUUID(),
    name,
    accessKey: newAccessKey(),
    sealedSecret: box.seal(secretKey),
    admin,
    createdAt: clock.now().toISOString(),
  });
  await users.create(user);
  return { id: user.id, name, accessKey: user.accessKey, secretKey, admin };
}
