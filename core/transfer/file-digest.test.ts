import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { builtModule, runModuleScript } from '../../test/support/module-process.js';
import { expectedDigests } from '../../test/support/digests.js';
import { digestFileBytes } from './file-digest.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-file-digest-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const expected = expectedDigests;

async function withFile<T>(data: Buffer, fn: (fd: number) => Promise<T>): Promise<T> {
  const path = join(dir, `f-${randomBytes(4).toString('hex')}`);
  writeFileSync(path, data);
  const handle = await open(path, 'r');
  try {
    return await fn(handle.fd);
  } finally {
    await handle.close();
  }
}

describe('digestFileBytes (hashing threads that read the file themselves)', () => {
  it('computes md5, sha256 and sha512 of the whole file and of a range, across block boundaries', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    await withFile(data, async (fd) => {
      expect(await digestFileBytes({ fd, start: 0, length: data.length })).toEqual(expected(data));
      const start = 1024 * 1024 - 7;
      const length = 2 * 1024 * 1024 + 99;
      expect(await digestFileBytes({ fd, start, length })).toEqual(expected(data.subarray(start, start + length)));
      expect(await digestFileBytes({ fd, start: 5, length: 0 })).toEqual(expected(Buffer.alloc(0)));
    });
  });

  it('runs several jobs at once, each with its own digests', async () => {
    const inputs = [randomBytes(2 * 1024 * 1024 + 1), randomBytes(777), randomBytes(1024 * 1024)];
    const results = await Promise.all(
      inputs.map((data) => withFile(data, (fd) => digestFileBytes({ fd, start: 0, length: data.length }))),
    );
    expect(results).toEqual(inputs.map(expected));
  });

  it('fails (integrity) when the file ends before the declared length', async () => {
    const data = randomBytes(100_000);
    await withFile(data, async (fd) => {
      await expect(digestFileBytes({ fd, start: 0, length: data.length + 10 })).rejects.toMatchObject({
        kind: 'integrity',
        message: expect.stringContaining('10 bytes before its declared end'),
      });
    });
  });

  it('fails (unavailable) on a descriptor it cannot read', async () => {
    await expect(digestFileBytes({ fd: 987_654, start: 0, length: 10 })).rejects.toMatchObject({
      kind: 'unavailable',
    });
  });

  it('stops when aborted, and answers only once the threads are done with the file', async () => {
    const data = randomBytes(64 * 1024 * 1024);
    await withFile(data, async (fd) => {
      const controller = new AbortController();
      const job = digestFileBytes({ fd, start: 0, length: data.length }, controller.signal);
      setTimeout(() => controller.abort(), 5);
      await expect(job).rejects.toMatchObject({ name: 'AbortError' });
      const aborted = new AbortController();
      aborted.abort();
      await expect(digestFileBytes({ fd, start: 0, length: 1 }, aborted.signal)).rejects.toMatchObject({
        name: 'AbortError',
      });
      // The threads are free again: the next job on the same file completes.
      expect(await digestFileBytes({ fd, start: 0, length: 4096 })).toEqual(expected(data.subarray(0, 4096)));
    });
  });

  it('lets the process finish its digest, then exit (the built module, in a process of its own)', async () => {
    // The threads must keep the process alive while a digest is pending, and not afterwards.
    const module = builtModule('core/transfer/file-digest.js');
    const data = randomBytes(1000);
    const path = join(dir, 'exit.raw');
    writeFileSync(path, data);
    const child = runModuleScript(
      `import { openSync } from 'node:fs';
      const { digestFileBytes } = await import(${JSON.stringify(module)});
      const fd = openSync(${JSON.stringify(path)}, 'r');
      const r = await digestFileBytes({ fd, start: 0, length: ${data.length} });
      console.log(r.checksums.sha256);`,
    );
    expect(child.signal, 'still running after 20 s: the hashing threads keep the process alive').toBeNull();
    expect(child.status, child.stderr).toBe(0);
    expect(child.stdout.trim()).toBe(expected(data).checksums.sha256);
  });
});
