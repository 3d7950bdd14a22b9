import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VisorError } from '../errors.js';
import { tightenIfPresent } from '../fs/private-paths.js';

/**
 * Seals user secrets before they go into the catalog (AES-256-GCM), so that a copy of the
 * catalog — a shared MongoDB, a backup — does not hand out working credentials. The key is a
 * file in the data directory (created 0600 on first use) or given in the config.
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new VisorError('config', 'the secret key for user credentials must be 32 bytes');
    this.#key = key;
  }

  seal(secret: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const data = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
    return `v1.${Buffer.concat([iv, cipher.getAuthTag(), data]).toString('base64url')}`;
  }

  open(sealed: string): string {
    const raw = sealed.startsWith('v1.') ? Buffer.from(sealed.slice(3), 'base64url') : Buffer.alloc(0);
    if (raw.length < 29) throw new VisorError('auth', 'a stored credential is unreadable');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    } catch (error) {
      throw new VisorError(
        'auth',
        "a stored credential cannot be opened with this server's key (was the key file replaced?)",
        { cause: error },
      );
    }
  }

  /** Reads the key file, creating it (0600) when missing. */
  static async fromFile(path: string): Promise<SecretBox> {
    try {
      const key = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64');
      // A key file an older version (or a copy) left readable by others is made 0600.
      tightenIfPresent(path);
      return new SecretBox(key);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new VisorError('config', `cannot read the credentials key ${path}: ${(error as Error).message}`, {
          cause: error,
        });
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const key = randomBytes(32);
    try {
      await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      // Another process created it first: use theirs.
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return SecretBox.fromFile(path);
      throw error;
    }
    await chmod(path, 0o600);
    return new SecretBox(key);
  }
}
