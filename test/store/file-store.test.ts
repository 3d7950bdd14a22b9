import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
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
