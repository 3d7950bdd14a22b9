import { chmodSync, closeSync, fstatSync, fchmodSync, mkdirSync, openSync, statSync, constants } from 'node:fs';
import { VisorError } from '../errors.js';

/**
 * The data folder holds the catalog (private metadata, sealed user secrets), the key that
 * unseals them and the image files: other local users must not read any of it. Modes are set
 * explicitly — a umask can only take bits away, so mkdir 0700 and open 0600 hold under any
 * umask — and folders or files left looser by an older version are tightened (when they are
 * ours to change).
 */
export function ensurePrivateDir(path: string, options: { tightenExisting?: boolean } = {}): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
    const info = statSync(path);
    // A shared folder (sticky or writable by all: /tmp) is never ours to close: made 0700, it
    // would lock every other user and service of the machine out of it.
    const shared = (info.mode & 0o1000) !== 0 || (info.mode & 0o002) !== 0;
    if (shared || options.tightenExisting === false) return;
    tighten(path, info, 0o700, (mode) => chmodSync(path, mode));
  } catch (error) {
    throw new VisorError('config', `cannot make the private folder ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Creates `path` empty (0600) if missing; makes an existing one 0600. */
export function ensurePrivateFile(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    const handle = fd;
    tighten(path, fstatSync(handle), 0o600, (mode) => fchmodSync(handle, mode));
  } catch (error) {
    throw new VisorError('config', `cannot make the private file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Makes an existing file 0600 when it is looser; a missing one is left missing. */
export function tightenIfPresent(path: string): void {
  try {
    tighten(path, statSync(path), 0o600, (mode) => chmodSync(path, mode));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function tighten(
  _path: string,
  info: { mode: number; uid: number },
  wanted: number,
  chmod: (mode: number) => void,
): void {
  if ((info.mode & 0o077) === 0) return;
  // Someone else's folder (a shared /srv chosen on purpose) is not ours to change.
  if (typeof process.getuid === 'function' && info.uid !== process.getuid() && process.getuid() !== 0) return;
  chmod(wanted);
}
