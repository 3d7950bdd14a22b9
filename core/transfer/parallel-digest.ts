import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { VisorError } from '../errors.js';
import type { Checksums } from '../image/model.js';

/**
 * md5 + sha256 + sha512 of a stream, computed on worker threads while the stream flows on.
 * One thread cannot hash all three faster than ~160 MiB/s (sha512 ~310, md5 ~450, sha256 ~1000
 * MiB/s here); spread over workers, hashing keeps up with the disk. Bytes are copied once into
 * slots of shared memory that the workers read in place.
 *
 * The slots belong to the process, not to a stream: a few shared arenas, made on demand up to a
 * fixed bound and handed to the workers once. A SharedArrayBuffer lives until every thread that
 * saw it has collected it, and an idle worker hardly ever collects; so a buffer per stream made
 * the server grow by the size of every upload it ever took (1,000 uploads of 1 MiB: +1.2 GB).
 * A stream borrows a slot while it fills it and gives it back when every worker has read it.
 * A slot a slow or stalled client is filling is handed to the workers half-full after
 * `partialSlotMs`, so a stalled upload pins no slot and cannot starve the others.
 */

/** Algorithms per worker, balanced by cost: sha512 alone ≈ md5 + sha256. */
const workerGroups: readonly (readonly string[])[] = [['sha512'], ['md5', 'sha256']];
const SLOT_SIZE = 1024 * 1024;
const SLOTS_PER_ARENA = 8;
/** 32 MiB of slots for the whole process, whatever the number of streams. */
const MAX_ARENAS = 4;
/** Slots one stream may hold (filling + being hashed): its share of the pool, and its backpressure. */
const SLOTS_PER_STREAM = 4;
/** A slot held this long is handed to the workers as it is, full or not. */
const partialSlotMs = 500;
/** When streams wait for slots, one not written to for this long is handed over at once. */
const idleSlotMs = 20;

const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const arenas = [];
const streams = new Map();
parentPort.on('message', (m) => {
  if (m.t === 'arena') {
    arenas[m.arena] = Buffer.from(m.memory);
  } else if (m.t === 'start') {
    streams.set(m.id, m.algorithms.map((a) => createHash(a)));
  } else if (m.t === 'update') {
    const hashes = streams.get(m.id);
    if (hashes) {
      const view = arenas[m.arena].subarray(m.offset, m.offset + m.length);
      for (const h of hashes) h.update(view);
    }
    parentPort.postMessage({ t: 'ack', id: m.id, slot: m.slot });
  } else if (m.t === 'end') {
    const hashes = streams.get(m.id);
    streams.delete(m.id);
    const digests = hashes ? Object.fromEntries(m.algorithms.map((a, i) => [a, hashes[i].digest('hex')])) : {};
    parentPort.postMessage({ t: 'digest', id: m.id, digests });
  } else if (m.t === 'drop') {
    streams.delete(m.id);
  }
});
`;

type Message = { t: 'ack'; id: number; slot: number } | { t: 'digest'; id: number; digests: Record<string, string> };

interface Listener {
  ack(slot: number): void;
  digest(digests: Record<string, string>): void;
  fail(error: Error): void;
}

/** What the pool needs of a stream: a slot when it waits for one, and a nudge to hand over a slot held too long. */
interface Borrower {
  grant(slot: number): void;
  flushIfHeldSince(before: number): void;
  flushIfIdleSince(before: number): void;
}

/**
 * Workers and slots shared by every stream of the process. The workers keep the process alive
 * exactly while a stream uses them: unref'd when idle (a CLI that hashed once still exits),
 * ref'd while hashing (a process whose only pending work is a digest does not exit before it
 * arrives).
 */
class HashPool {
  #workers: Worker[] | undefined;
  readonly #listeners = new Map<number, Listener[]>();
  readonly #arenas: SharedArrayBuffer[] = [];
  readonly #views: Buffer[] = [];
  readonly #free: number[] = [];
  readonly #waiting: Borrower[] = [];
  readonly #borrowers = new Set<Borrower>();
  #sweeper: NodeJS.Timeout | undefined;
  #nextId = 1;

  workers(): Worker[] {
    if (!this.#workers) {
      this.#workers = workerGroups.map((_, index) => {
        const worker = new Worker(workerSource, { eval: true });
        worker.on('message', (m: Message) => {
          const listener = this.#listeners.get(m.id)?.[index];
          if (!listener) return;
          if (m.t === 'ack') listener.ack(m.slot);
          else listener.digest(m.digests);
        });
        worker.on('error', (error: Error) => {
          // A dead hashing thread fails the streams in flight (all of them use this pool) and ends
          // its siblings; the next stream starts fresh workers (the arenas are handed to them).
          const dead = this.#workers;
          if (!dead?.includes(worker)) return;
          this.#workers = undefined;
          for (const sibling of dead) if (sibling !== worker) void sibling.terminate();
          for (const listeners of [...this.#listeners.values()]) listeners[index]?.fail(error);
        });
        for (const [arena, memory] of this.#arenas.entries()) worker.postMessage({ t: 'arena', arena, memory });
        // After the listeners: adding a 'message' listener refs the worker again.
        if (this.#listeners.size === 0) worker.unref();
        return worker;
      });
    }
    return this.#workers;
  }

  register(listeners: Listener[], borrower: Borrower): number {
    const id = this.#nextId++;
    this.#listeners.set(id, listeners);
    this.#borrowers.add(borrower);
    if (this.#listeners.size === 1) for (const worker of this.#workers ?? []) worker.ref();
    this.#sweeper ??= setInterval(() => this.#sweep(), partialSlotMs / 2).unref();
    return id;
  }

  unregister(id: number, borrower: Borrower): void {
    this.#borrowers.delete(borrower);
    this.cancelWait(borrower);
    if (!this.#listeners.delete(id)) return;
    if (this.#listeners.size === 0) {
      for (const worker of this.#workers ?? []) worker.unref();
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  /** The memory of slot `slot` (for copying into it). */
  view(slot: number): Buffer {
    const at = (slot % SLOTS_PER_ARENA) * SLOT_SIZE;
    return this.#views[Math.floor(slot / SLOTS_PER_ARENA)]!.subarray(at, at + SLOT_SIZE);
  }

  /** Where a worker finds slot `slot`. */
  locate(slot: number): { arena: number; offset: number } {
    return { arena: Math.floor(slot / SLOTS_PER_ARENA), offset: (slot % SLOTS_PER_ARENA) * SLOT_SIZE };
  }

  /** A free slot now, or undefined (then `wait` for one). */
  acquire(): number | undefined {
    if (this.#free.length === 0 && this.#arenas.length < MAX_ARENAS && this.#waiting.length === 0) this.#grow();
    return this.#waiting.length === 0 ? this.#free.pop() : undefined;
  }

  /**
   * Queues `borrower` for the next slot given back (first come, first served), and frees the
   * slots of streams that stopped writing: a crowd of stalled uploads must not make others wait.
   */
  wait(borrower: Borrower): void {
    this.#waiting.push(borrower);
    const before = Date.now() - idleSlotMs;
    for (const other of [...this.#borrowers]) if (other !== borrower) other.flushIfIdleSince(before);
  }

  cancelWait(borrower: Borrower): void {
    const at = this.#waiting.indexOf(borrower);
    if (at >= 0) this.#waiting.splice(at, 1);
  }

  release(slot: number): void {
    const next = this.#waiting.shift();
    if (next) next.grant(slot);
    else this.#free.push(slot);
  }

  #grow(): void {
    const arena = this.#arenas.length;
    const memory = new SharedArrayBuffer(SLOT_SIZE * SLOTS_PER_ARENA);
    this.#arenas.push(memory);
    this.#views.push(Buffer.from(memory));
    for (const worker of this.#workers ?? []) worker.postMessage({ t: 'arena', arena, memory });
    for (let i = SLOTS_PER_ARENA - 1; i >= 0; i--) this.#free.push(arena * SLOTS_PER_ARENA + i);
  }

  #sweep(): void {
    const before = Date.now() - partialSlotMs;
    for (const borrower of [...this.#borrowers]) borrower.flushIfHeldSince(before);
  }
}

const pool = new HashPool();

export class ParallelDigestStream extends Transform implements Borrower {
  readonly #workers: Worker[];
  readonly #id: number;
  readonly #digests: Record<string, string> = {};
  /** Per slot this stream gave the workers: how many workers still read it. */
  readonly #busy = new Map<number, number>();
  #digestsPending: number;
  /** The slot being filled, when one is borrowed. */
  #slot: number | undefined;
  #slotSince = 0;
  #lastWrite = 0;
  #fill = 0;
  #size = 0;
  #resume: (() => void) | undefined;
  #finished: (() => void) | undefined;
  #result: { size: number; checksums: Required<Checksums> } | undefined;

  constructor() {
    super({ highWaterMark: 4 });
    this.#workers = pool.workers();
    this.#digestsPending = this.#workers.length;
    this.#id = pool.register(
      this.#workers.map(() => ({
        ack: (slot) => this.#ack(slot),
        digest: (digests) => {
          Object.assign(this.#digests, digests);
          if (--this.#digestsPending === 0) this.#finished?.();
        },
        fail: (error) =>
          this.destroy(new VisorError('internal', `a hashing thread failed: ${error.message}`, { cause: error })),
      })),
      this,
    );
    for (const [index, worker] of this.#workers.entries())
      worker.postMessage({ t: 'start', id: this.#id, algorithms: workerGroups[index] });
  }

  get bytes(): number {
    return this.#size;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    this.#lastWrite = Date.now();
    this.#copy(chunk, 0, () => callback(null, chunk));
  }

  override _flush(callback: TransformCallback): void {
    if (this.#slot !== undefined) this.#post();
    this.#finished = () => {
      pool.unregister(this.#id, this);
      const { md5, sha256, sha512 } = this.#digests;
      if (!md5 || !sha256 || !sha512) {
        callback(new VisorError('internal', 'a hashing thread gave no digest'));
        return;
      }
      this.#result = { size: this.#size, checksums: { md5, sha256, sha512 } };
      callback();
    };
    for (const [index, worker] of this.#workers.entries())
      worker.postMessage({ t: 'end', id: this.#id, algorithms: workerGroups[index] });
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    if (!this.#result) {
      pool.unregister(this.#id, this);
      for (const worker of this.#workers) worker.postMessage({ t: 'drop', id: this.#id });
      // Given back at once: a worker still reading one of them only feeds a hash nobody reads.
      if (this.#slot !== undefined) pool.release(this.#slot);
      for (const slot of this.#busy.keys()) pool.release(slot);
      this.#slot = undefined;
      this.#busy.clear();
      this.#resume = undefined;
    }
    callback(error);
  }

  /** Size and checksums; only once the stream has ended. */
  result(): { size: number; checksums: Required<Checksums> } {
    if (!this.#result) throw new VisorError('internal', 'digest read before the stream ended');
    return this.#result;
  }

  grant(slot: number): void {
    if (this.destroyed) {
      pool.release(slot);
      return;
    }
    this.#take(slot);
    this.#wake();
  }

  flushIfHeldSince(before: number): void {
    if (this.#slot !== undefined && this.#fill > 0 && this.#slotSince <= before) this.#post();
  }

  flushIfIdleSince(before: number): void {
    if (this.#slot !== undefined && this.#fill > 0 && this.#lastWrite <= before) this.#post();
  }

  /** Copies `chunk` (from `from`) into slots, waiting for one when needed; then `done`. */
  #copy(chunk: Buffer, from: number, done: () => void): void {
    let offset = from;
    while (offset < chunk.length) {
      if (this.#slot === undefined) {
        const slot = this.#busy.size < SLOTS_PER_STREAM ? pool.acquire() : undefined;
        if (slot === undefined) {
          this.#resume = () => this.#copy(chunk, offset, done);
          // Over its own share, the stream waits for its own slots to come back; else for the pool.
          if (this.#busy.size < SLOTS_PER_STREAM) pool.wait(this);
          return;
        }
        this.#take(slot);
      }
      const n = Math.min(SLOT_SIZE - this.#fill, chunk.length - offset);
      chunk.copy(pool.view(this.#slot!), this.#fill, offset, offset + n);
      this.#fill += n;
      offset += n;
      if (this.#fill === SLOT_SIZE) this.#post();
    }
    done();
  }

  #take(slot: number): void {
    this.#slot = slot;
    this.#slotSince = Date.now();
    this.#fill = 0;
  }

  #ack(slot: number): void {
    const left = (this.#busy.get(slot) ?? 1) - 1;
    if (left > 0) {
      this.#busy.set(slot, left);
      return;
    }
    this.#busy.delete(slot);
    pool.release(slot);
    // Waiting for its own share to shrink (not queued at the pool): try again now.
    if (this.#resume && this.#busy.size === SLOTS_PER_STREAM - 1) this.#wake();
  }

  #wake(): void {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.();
  }

  /** Hands the current slot to every worker. */
  #post(): void {
    const slot = this.#slot!;
    const { arena, offset } = pool.locate(slot);
    this.#busy.set(slot, this.#workers.length);
    for (const worker of this.#workers)
      worker.postMessage({ t: 'update', id: this.#id, slot, arena, offset, length: this.#fill });
    this.#slot = undefined;
    this.#fill = 0;
  }
}
