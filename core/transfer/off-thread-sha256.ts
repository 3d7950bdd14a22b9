import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { VisorError } from '../errors.js';
import type { ChecksumAlgorithm, Checksums } from '../image/model.js';

// The worker: one set of running hashes per session, fed blocks in order. It answers each update
// (so that the caller knows when it may reuse the block's memory) and each digest, in the order
// asked; an open or a drop needs no answer. A block arrives as its buffer (shared memory: a
// handle, not the bytes; an ordinary one: transferred), an offset and a length.
const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const sessions = new Map();
const start = (algorithms) => algorithms.map((a) => [a, createHash(a)]);
parentPort.on('message', (m) => {
  try {
    if (m.op === 'open') return void sessions.set(m.id, { algorithms: m.algorithms, hashes: start(m.algorithms) });
    if (m.op === 'drop') return void sessions.delete(m.id);
    const session = sessions.get(m.id);
    if (!session) throw new Error('no such session');
    if (m.op === 'update') {
      const bytes = new Uint8Array(m.buffer, m.offset, m.length);
      for (const [, hash] of session.hashes) hash.update(bytes);
      return void parentPort.postMessage(0);
    }
    const digests = {};
    for (const [a, hash] of session.hashes) digests[a] = hash.digest('hex');
    session.hashes = start(session.algorithms);
    parentPort.postMessage(digests);
  } catch (error) {
    if (m.op === 'update' || m.op === 'digest') parentPort.postMessage({ error: String(error && error.message) });
  }
});
`;

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

/**
 * One hashing thread of the process-wide pool. It is unref'd while no session is open, so it
 * never keeps the process alive, and ref'd while one is (an awaited digest must not be cut short
 * by a process that thinks it has nothing left to do).
 */
class HashingThread {
  readonly worker: Worker;
  sessions = 0;
  failure: VisorError | undefined;
  readonly #pending: Pending[] = [];

  constructor(onDeath: (thread: HashingThread) => void) {
    this.worker = new Worker(workerSource, { eval: true });
    this.worker.unref();
    this.worker.on('message', (value: unknown) => {
      const p = this.#pending.shift();
      if (!p) return;
      const error = (value as { error?: string } | null)?.error;
      if (typeof error === 'string') p.reject(new VisorError('internal', `hashing failed: ${error}`));
      else p.resolve(value);
    });
    const fail = (error: Error) => {
      this.failure ??= new VisorError('internal', `the hashing thread failed: ${error.message}`, { cause: error });
      for (const p of this.#pending.splice(0)) p.reject(this.failure);
      onDeath(this);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`it exited (code ${code})`)));
  }

  opened(): void {
    if (this.sessions++ === 0) this.worker.ref();
  }

  closed(): void {
    if (--this.sessions === 0) this.worker.unref();
  }

  post(message: object, transfer: ArrayBuffer[] = []): void {
    if (!this.failure) this.worker.postMessage(message, transfer);
  }

  ask(message: object, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.worker.postMessage(message, transfer);
    });
  }
}

/**
 * At most two threads, and one fewer than the cores (at least one): hashing runs beside the
 * thread that receives and writes, not in place of it.
 */
const POOL_SIZE = Math.max(1, Math.min(2, availableParallelism() - 1));
const threads: HashingThread[] = [];
let nextSession = 1;

/** A live thread for a new session: the least busy, or a new one while the pool is not full. */
function threadForSession(): HashingThread {
  const idlest = threads.reduce<HashingThread | undefined>(
    (a, t) => (a && a.sessions <= t.sessions ? a : t),
    undefined,
  );
  if (idlest && (idlest.sessions === 0 || threads.length >= POOL_SIZE)) return idlest;
  // Created on first use; a dead one is taken out of the pool, so the next session gets a fresh one.
  const thread = new HashingThread((dead) => {
    const at = threads.indexOf(dead);
    if (at >= 0) threads.splice(at, 1);
  });
  threads.push(thread);
  return thread;
}

/** The pool's live workers (for tests and diagnostics). */
export function hashingThreads(): readonly Worker[] {
  return threads.map((t) => t.worker);
}

/** Threads alive (at most `maxThreads`), sessions open, sessions opened since the start (tests, diagnostics). */
export function hashingUse(): { threads: number; maxThreads: number; openSessions: number; sessionsOpened: number } {
  const openSessions = threads.reduce((n, t) => n + t.sessions, 0);
  return { threads: threads.length, maxThreads: POOL_SIZE, openSessions, sessionsOpened: nextSession - 1 };
}

/**
 * Digests computed on a hashing thread, so that hashing runs beside the receiving and writing
 * instead of between them. Blocks in shared memory (a SharedArrayBuffer) reach the thread without
 * a copy; any other block is copied once. Updates are hashed in the order given. The caller must
 * not change a block until its `update` has resolved. `close` drops the session (the thread stays
 * for the next one); a thread that dies fails what is pending, and whatever the session asks after.
 */
export class OffThreadDigest {
  readonly #thread: HashingThread;
  readonly #id = nextSession++;
  #closed = false;

  constructor(algorithms: readonly ChecksumAlgorithm[]) {
    this.#thread = threadForSession();
    this.#thread.opened();
    this.#thread.post({ op: 'open', id: this.#id, algorithms: [...algorithms] });
  }

  update(block: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new VisorError('internal', 'the hashing session was closed'));
    if (block.buffer instanceof SharedArrayBuffer) {
      const message = {
        op: 'update',
        id: this.#id,
        buffer: block.buffer,
        offset: block.byteOffset,
        length: block.length,
      };
      return this.#thread.ask(message).then(() => undefined);
    }
    const copy = new Uint8Array(block);
    const message = { op: 'update', id: this.#id, buffer: copy.buffer, offset: 0, length: copy.length };
    return this.#thread.ask(message, [copy.buffer]).then(() => undefined);
  }

  /** The hex digests of everything updated so far (in order); the hashes start anew afterwards. */
  async digest(): Promise<Checksums> {
    if (this.#closed) throw new VisorError('internal', 'the hashing session was closed');
    return (await this.#thread.ask({ op: 'digest', id: this.#id })) as Checksums;
  }

  /** Ends the session: its hashes are dropped, and the thread may let the process exit. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#thread.post({ op: 'drop', id: this.#id });
    this.#thread.closed();
  }
}

/** A sha256 on a hashing thread (see OffThreadDigest). */
export class OffThreadSha256 {
  readonly #digest = new OffThreadDigest(['sha256']);

  update(block: Uint8Array): Promise<void> {
    return this.#digest.update(block);
  }

  /** The hex digest of everything updated so far (in order); the hash starts anew afterwards. */
  async digest(): Promise<string> {
    return (await this.#digest.digest()).sha256!;
  }

  async close(): Promise<void> {
    this.#digest.close();
  }
}
