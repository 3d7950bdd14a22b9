import { Worker } from 'node:worker_threads';
import { VisorError } from '../errors.js';
import type { Checksums } from '../image/model.js';

/** Bytes of an open local file: its descriptor and a range of it. */
export interface FileBytes {
  fd: number;
  start: number;
  length: number;
}

/**
 * Algorithms per thread, balanced by cost (sha512 alone ≈ md5 + sha256). Each thread reads the
 * file itself: a second copy out of the page cache costs far less than handing every block from
 * one thread to the other (the copy into shared memory, a message per block, garbage).
 */
const threadGroups: readonly (readonly string[])[] = [['sha512'], ['md5', 'sha256']];

// A thread: reads the range into one reused 1 MiB buffer (it stays in the CPU's caches between
// the read and the hash), hashes it, answers with the digests. A flag in shared memory, checked
// between blocks, stops it early; the file is not closed until it has answered.
const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { readSync } = require('node:fs');
const buffer = Buffer.allocUnsafeSlow(1024 * 1024);
parentPort.on('message', (m) => {
  const stop = new Int32Array(m.stop);
  const hashes = m.algorithms.map((a) => createHash(a));
  let done = 0;
  try {
    while (done < m.length) {
      if (Atomics.load(stop, 0) !== 0) return parentPort.postMessage({ id: m.id, stopped: true });
      const n = readSync(m.fd, buffer, 0, Math.min(buffer.length, m.length - done), m.start + done);
      if (n === 0) return parentPort.postMessage({ id: m.id, short: m.length - done });
      const view = n === buffer.length ? buffer : buffer.subarray(0, n);
      for (const h of hashes) h.update(view);
      done += n;
    }
    const digests = Object.fromEntries(m.algorithms.map((a, i) => [a, hashes[i].digest('hex')]));
    parentPort.postMessage({ id: m.id, digests });
  } catch (error) {
    parentPort.postMessage({ id: m.id, error: String((error && error.message) || error) });
  }
});
`;

type Answer = { id: number } & (
  | { digests: Record<string, string> }
  | { stopped: true }
  | { short: number }
  | { error: string }
);

interface Job {
  answers: Answer[];
  settle(answers: Answer[]): void;
}

/**
 * The hashing threads of the process, made on first use and kept: unref'd while idle (a CLI
 * that hashed once still exits), ref'd while a job runs. A thread that dies fails the jobs in
 * flight; the next job starts fresh threads.
 */
class FileHashPool {
  #workers: Worker[] | undefined;
  readonly #jobs = new Map<number, Job>();
  #nextId = 1;

  run(file: FileBytes, stop: SharedArrayBuffer): Promise<Answer[]> {
    const workers = this.#start();
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#jobs.set(id, {
        answers: [],
        settle: (answers) => {
          this.#jobs.delete(id);
          if (this.#jobs.size === 0) for (const worker of this.#workers ?? []) worker.unref();
          resolve(answers);
        },
      });
      if (this.#jobs.size === 1) for (const worker of workers) worker.ref();
      for (const [index, worker] of workers.entries())
        worker.postMessage({ id, ...file, algorithms: threadGroups[index], stop });
    });
  }

  #start(): Worker[] {
    if (this.#workers) return this.#workers;
    const workers = threadGroups.map(() => new Worker(workerSource, { eval: true }));
    for (const worker of workers) {
      worker.on('message', (answer: Answer) => {
        const job = this.#jobs.get(answer.id);
        if (!job) return;
        job.answers.push(answer);
        if (job.answers.length === workers.length) job.settle(job.answers);
      });
      const died = (error: Error) => {
        if (this.#workers !== workers) return;
        this.#workers = undefined;
        // The others may still be reading a descriptor their callers would close: stopped first.
        const jobs = [...this.#jobs.values()];
        void Promise.allSettled(workers.filter((other) => other !== worker).map((other) => other.terminate())).then(
          () => {
            for (const job of jobs) job.settle([{ id: 0, error: `a hashing thread failed: ${error.message}` }]);
          },
        );
      };
      worker.on('error', died);
      worker.on('exit', (code) => died(new Error(`it exited (code ${code})`)));
      worker.unref();
    }
    this.#workers = workers;
    return workers;
  }
}

const pool = new FileHashPool();

/**
 * md5, sha256 and sha512 of a range of an open file, computed on worker threads that read the
 * file themselves: nothing passes through this thread. Resolves only once every thread is done
 * with the descriptor (also when `signal` aborts), so the caller may close it at once.
 */
export async function digestFileBytes(
  file: FileBytes,
  signal?: AbortSignal,
): Promise<{ size: number; checksums: Required<Checksums> }> {
  if (signal?.aborted) throw abortError();
  const stop = new SharedArrayBuffer(4);
  const onAbort = () => Atomics.store(new Int32Array(stop), 0, 1);
  signal?.addEventListener('abort', onAbort, { once: true });
  let answers: Answer[];
  try {
    answers = await pool.run(file, stop);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  const digests: Record<string, string> = {};
  for (const answer of answers) {
    if ('error' in answer) throw new VisorError('unavailable', `reading the stored file failed: ${answer.error}`);
    if ('stopped' in answer) throw abortError();
    if ('short' in answer)
      throw new VisorError('integrity', `the stored file ended ${answer.short} bytes before its declared end`);
    Object.assign(digests, answer.digests);
  }
  const { md5, sha256, sha512 } = digests;
  if (!md5 || !sha256 || !sha512) throw new VisorError('internal', 'a hashing thread gave no digest');
  return { size: file.length, checksums: { md5, sha256, sha512 } };
}

const abortError = () => Object.assign(new Error('the digest was aborted'), { name: 'AbortError' });
