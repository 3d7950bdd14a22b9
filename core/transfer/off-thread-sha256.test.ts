import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { builtModule, runModuleScript } from '../../test/support/module-process.js';
import { hashingUse, OffThreadDigest, OffThreadSha256 } from './off-thread-sha256.js';

describe('OffThreadSha256', () => {
  it('hashes blocks in the order given, from shared memory and from ordinary buffers, many in flight', async () => {
    const blocks = Array.from({ length: 40 }, (_, i) => randomBytes(1 + ((i * 7919) % 70_000)));
    const shared = Buffer.from(new SharedArrayBuffer(70_000));
    const hash = new OffThreadSha256();
    try {
      const updates: Promise<void>[] = [];
      for (const [i, block] of blocks.entries()) {
        if (i % 2 === 0) {
          // Shared memory is not copied: wait before the next block overwrites it.
          block.copy(shared);
          await hash.update(shared.subarray(0, block.length));
        } else updates.push(hash.update(block.subarray(0)));
      }
      await Promise.all(updates);
      expect(await hash.digest()).toBe(createHash('sha256').update(Buffer.concat(blocks)).digest('hex'));
      // Starts anew after a digest.
      await hash.update(Buffer.from('abc'));
      expect(await hash.digest()).toBe(createHash('sha256').update('abc').digest('hex'));
    } finally {
      await hash.close();
    }
  });

  it('fails what is pending, and what comes after, once its worker is gone', async () => {
    const hash = new OffThreadSha256();
    await hash.close();
    await expect(hash.digest()).rejects.toThrow();
  });

  it('keeps one hash state per session on the shared threads, interleaved, and leaves no session open', async () => {
    const parts = Array.from({ length: 6 }, (_, i) => randomBytes(10_000 + i));
    const a = new OffThreadDigest(['sha256', 'md5']);
    const b = new OffThreadDigest(['sha256']);
    try {
      // Interleaved updates of two sessions: each sees only its own bytes, in order.
      await Promise.all(parts.map((part, i) => (i % 2 === 0 ? a : b).update(part)));
      const even = Buffer.concat(parts.filter((_, i) => i % 2 === 0));
      const odd = Buffer.concat(parts.filter((_, i) => i % 2 === 1));
      expect(await a.digest()).toEqual({
        sha256: createHash('sha256').update(even).digest('hex'),
        md5: createHash('md5').update(even).digest('hex'),
      });
      expect(await b.digest()).toEqual({ sha256: createHash('sha256').update(odd).digest('hex') });
      expect(hashingUse().threads).toBeLessThanOrEqual(hashingUse().maxThreads);
    } finally {
      a.close();
      b.close();
    }
    expect(hashingUse().openSessions).toBe(0);
    await expect(a.update(Buffer.from('late'))).rejects.toThrow(/closed/);
  });
});

describe('OffThreadSha256 in a process of its own (the built module)', () => {
  // While a session is open the thread keeps the process alive: here nothing else does (no file,
  // no socket), so an unref'd thread would let the process end before the digest arrives (exit 13,
  // a top-level await never settled). Closed, the session lets it exit.
  it('keeps the process alive for an awaited digest and nothing else, then lets it exit', () => {
    const module = builtModule('core/transfer/off-thread-sha256.js');
    const result = runModuleScript(`
      const { OffThreadSha256 } = await import(${JSON.stringify(module)});
      const block = new Uint8Array(new SharedArrayBuffer(64 * 1024 * 1024)).fill(7);
      const hash = new OffThreadSha256();
      await hash.update(block);
      console.log(await hash.digest());
      await hash.close();
    `);
    expect(result.signal, 'still running after 20 s: the hashing thread keeps the process alive').toBeNull();
    expect(result.status, `exit ${result.status}: ${result.stderr}`).toBe(0);
    expect(result.stdout.trim()).toBe(
      createHash('sha256')
        .update(Buffer.alloc(64 * 1024 * 1024, 7))
        .digest('hex'),
    );
  });
});
