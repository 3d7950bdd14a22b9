import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FileStore } from '../../core/store/file/file-store.js';
import { storeContract } from '../../core/testing/store-contract.js';

storeContract('file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'visor-file-store-'));
  const root = join(dir, 'images');
  await writeFile(join(dir, 'secret.txt'), 'outside the store');
  const store = new FileStore({ root });
  await store.head(pathToFileURL(join(root, 'probe')).href).catch(() => undefined); // creates the root
  await symlink(join(dir, 'secret.txt'), join(root, 'link-out'));
  // Planted in the store: a FIFO (opening it for reading would wait for a writer for ever) and a folder.
  execFileSync('mkfifo', [join(root, 'fifo-in')]);
  await mkdir(join(root, 'folder-in'));
  return {
    store: async () => new FileStore({ root }),
    // What a reader could open: every visible name (temp files are dot-files).
    listObjects: async () =>
      (await readdir(root))
        .filter((n) => !n.startsWith('.') && !['link-out', 'fifo-in', 'folder-in'].includes(n))
        .sort(),
    foreignUris: [
      pathToFileURL(join(dir, 'secret.txt')).href,
      `file://${root}/../secret.txt`,
      `file://${root}/%2e%2e/secret.txt`,
      pathToFileURL('/etc/passwd').href,
      pathToFileURL(root).href,
      pathToFileURL(join(root, 'link-out')).href,
      pathToFileURL(join(root, 'fifo-in')).href,
      pathToFileURL(join(root, 'folder-in')).href,
    ],
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('file store: close', () => {
  // close() while uploads and deletes are under way (a server shutting down): each finishes, and the
  // store reopens its folder for what comes after. (The narrower race — close() between an fsync's
  // taking the folder's descriptor and the fsync itself — cannot be forced from outside; close()
  // waits for the fsyncs that hold the descriptor.)
  it('loses nothing and fails nothing when closed while puts and deletes are in flight', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'visor-file-store-close-'));
    try {
      const store = new FileStore({ root: join(dir, 'images') });
      const failures: unknown[] = [];
      for (let i = 0; i < 30; i++) {
        const { uri } = await store.put(`k${i}`, Readable.from([Buffer.from(`object ${i}`)]));
        // Not awaited: the delete's folder fsync is in flight when close() starts.
        const deleting = store.delete(uri).catch((error: unknown) => failures.push(error));
        const putting = store.put(`p${i}`, Readable.from([Buffer.from('x')])).catch((e: unknown) => failures.push(e));
        await store.close();
        await Promise.all([deleting, putting]);
      }
      expect(failures).toEqual([]);
      await store.close();
      // Nothing of the objects deleted is left; the others are all there.
      const left = (await readdir(join(dir, 'images'))).filter((n) => !n.startsWith('.'));
      expect(left.filter((n) => n.startsWith('k'))).toEqual([]);
      expect(left.filter((n) => n.startsWith('p'))).toHaveLength(30);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
