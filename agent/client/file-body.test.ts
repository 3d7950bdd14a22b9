import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { sendFileBody } from './file-body.js';

const dir = mkdtempSync(join(tmpdir(), 'visor-file-body-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A destination that keeps copies of what it was given (the buffers are reused) and completes writes late. */
function collector(): { sink: Writable; received: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      setTimeout(callback, 1);
    },
  });
  return { sink, received: () => Buffer.concat(chunks) };
}

async function withFile<T>(data: Buffer, fn: (file: Awaited<ReturnType<typeof open>>) => Promise<T>): Promise<T> {
  const path = join(dir, randomBytes(4).toString('hex'));
  writeFileSync(path, data);
  const file = await open(path, 'r');
  try {
    return await fn(file);
  } finally {
    await file.close();
  }
}

describe('sendFileBody', () => {
  it.each([0, 1, 4 * 1024 * 1024, 13 * 1024 * 1024 + 7])(
    'sends %d bytes in order and returns their sha256',
    async (n) => {
      const data = randomBytes(n);
      await withFile(data, async (file) => {
        const { sink, received } = collector();
        const seen: number[] = [];
        const sha256 = await sendFileBody(sink, { file, size: n, onProgress: (b) => seen.push(b) }, () => undefined);
        expect(received().equals(data)).toBe(true);
        expect(sha256).toBe(createHash('sha256').update(data).digest('hex'));
        expect(seen.at(-1) ?? 0).toBe(n);
      });
    },
  );

  it('fails clearly when the file is shorter than the size it was opened with', async () => {
    await withFile(randomBytes(1000), async (file) => {
      await expect(sendFileBody(collector().sink, { file, size: 5000 }, () => undefined)).rejects.toMatchObject({
        kind: 'invalidInput',
        message: expect.stringContaining('shrank'),
      });
    });
  });

  it('stops between blocks when told to (an early answer), and at once on an abort', async () => {
    const data = randomBytes(20 * 1024 * 1024);
    await withFile(data, async (file) => {
      let blocks = 0;
      const early = new Error('answered');
      await expect(
        sendFileBody(collector().sink, { file, size: data.length }, () => (++blocks > 2 ? early : undefined)),
      ).rejects.toBe(early);
      const controller = new AbortController();
      // A destination that never completes a write: only the abort can end the upload.
      const stalled = new Writable({ write: () => undefined });
      const failures: Error[] = [];
      stalled.on('error', (error) => failures.push(error));
      const sending = sendFileBody(stalled, { file, size: data.length, signal: controller.signal }, () => undefined);
      setTimeout(() => controller.abort(new Error('interrupted')), 20);
      await expect(sending).rejects.toThrow();
      expect(stalled.destroyed).toBe(true);
      expect(failures.map((e) => e.message)).toEqual(['interrupted']);
    });
  });
});
