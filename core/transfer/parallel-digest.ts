import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { VisorError } from '../errors.js';
import type { Checksums } from '../image/model.js';

/**
 * md5 + sha256 + sha512 of a stream, computed on worker threads while the stream flows on.
 * One thread cannot hash all three faster than ~160 MiB/s (sha512 ~310, md5 ~450, sha256 ~1000
 * MiB/s here); spread over workers, hashing keeps up with the disk. Bytes are copied once into a
 * shared ring of slots that the workers read in place; a slot is reused when every worker is done
 * with it, which also bounds memory (ring size) and applies backpressure.
 */

/** Algorithms per worker, balanced by cost: sha512 alone ≈ md5 + sha256. */
const workerGroups: readonly (readonly string[])[] = [['sha512'], ['md5', 'sha256']];
const SLOT_SIZE = 1024 * 1024;
const SLOTS = 8;

const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const streams = new Map();
parentPort.on('message', (m) => {
  if (m.t === 'start') {
    streams.set(m.id, { hashes: m.algorithms.map((a) => [a, createHash(a)]), ring: Buffer.from(m.ring) });
  } else if (m.t === 'update') {
    const s = streams.get(m.id);
    if (s) { const view = s.ring.subarray(m.offset, m.offset + m.length); for (const [, h] of s.hashes) h.update(view); }
    parentPort.postMessage({ t: 'ack', id: m.id, slot: m.slot });
  } else if (m.t === 'end') {
    const s = streams.get(m.id);
    streams.delete(m.id);
    parentPort.postMessage({ t: 'digest', id: m.id, digests: s ? Object.fromEntries(s.hashes.map(([a, h]) => [a, h.digest('hex')])) : {} });
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

/**
 * Workers shared by every stream of the process. They keep the process alive exactly while a
 * stream uses them: unref'd when idle (a CLI that hashed once still exits), ref'd while hashing
 * (a process whose only pending work is a digest does not exit before it arrives).
 */
class HashPool {
  #workers: Worker[] | undefined;
  readonly #listeners = new Map<number, Listener[]>();
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
          // its siblings; the next stream starts a fresh pool.
          const dead = this.#workers;
          if (!dead?.includes(worker)) return;
          this.#workers = undefined;
          for (const sibling of dead) if (sibling !== worker) void sibling.terminate();
          for (const listeners of [...this.#listeners.values()]) listeners[index]?.fail(error);
        });
        // After the listeners: adding a 'message' listener refs the worker again.
        if (this.#listeners.size === 0) worker.unref();
        return worker;
      });
    }
    return this.#workers;
  }

  register(listeners: Listener[]): number {
    const id = this.#nextId++;
    this.#listeners.set(id, listeners);
    if (this.#listeners.size === 1) for (const worker of this.#workers ?? []) worker.ref();
    return id;
  }

  unregister(id: number): void {
    if (!this.#listeners.delete(id)) return;
    if (this.#listeners.size === 0) for (const worker of this.#workers ?? []) worker.unref();
  }
}

const pool = new HashPool();

export class ParallelDigestStream extends Transform {
  readonly #ring = new SharedArrayBuffer(SLOT_SIZE * SLOTS);
  readonly #view = Buffer.from(this.#ring);
  /** Per slot: how many workers still read it. */
  readonly #busy = new Array<number>(SLOTS).fill(0);
  readonly #workers: Worker[];
  readonly #id: number;
  readonly #digests: Record<string, string> = {};
  #digestsPending: number;
  #slot = 0;
  #fill = 0;
  #size = 0;
  #waiting: (() => void) | undefined;
  #finished: (() => void) | undefined;
  #result: { size: number; checksums: Required<Checksums> } | undefined;

  constructor() {
    super({ highWaterMark: 4 });
    this.#workers = pool.workers();
    this.#digestsPending = this.#workers.length;
    this.#id = pool.register(
      this.#workers.map(() => ({
        ack: (slot) => {
          this.#busy[slot] = (this.#busy[slot] ?? 1) - 1;
          const resume = this.#waiting;
          if (resume && this.#busy[this.#slot] === 0) {
            this.#waiting = undefined;
            resume();
          }
        },
        digest: (digests) => {
          Object.assign(this.#digests, digests);
          if (--this.#digestsPending === 0) this.#finished?.();
        },
        fail: (error) => {
          pool.unregister(this.#id);
          this.destroy(new VisorError('internal', `a hashing thread failed: ${error.message}`, { cause: error }));
        },
      })),
    );
    this.#workers.forEach((worker, index) => worker.postMessage({ t: 'start', id: this.#id, algorithms: workerGroups[index], ring: this.#ring }));
  }

  get bytes(): number {
    return this.#size;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    this.#copy(chunk, 0, () => callback(null, chunk));
  }

  override _flush(callback: TransformCallback): void {
    if (this.#fill > 0) this.#post();
    this.#finished = () => {
      pool.unregister(this.#id);
      const { md5, sha256, sha512 } = this.#digests;
      if (!md5 || !sha256 || !sha512) {
        callback(new VisorError('internal', 'a hashing thread gave no digest'));
        return;
      }
      this.#result = { size: this.#size, checksums: { md5, sha256, sha512 } };
      callback();
    };
    for (const worker of this.#workers) worker.postMessage({ t: 'end', id: this.#id });
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    if (!this.#result) {
      pool.unregister(this.#id);
      for (const worker of this.#workers) worker.postMessage({ t: 'drop', id: this.#id });
    }
    callback(error);
  }

  /** Size and checksums; only once the stream has ended. */
  result(): { size: number; checksums: Required<Checksums> } {
    if (!this.#result) throw new VisorError('internal', 'digest read before the stream ended');
    return this.#result;
  }

  /** Copies `chunk` (from `from`) into the ring, waiting for free slots; then `done`. */
  #copy(chunk: Buffer, from: number, done: () => void): void {
    let offset = from;
    while (offset < chunk.length) {
      if (this.#busy[this.#slot]! > 0) {
        this.#waiting = () => this.#copy(chunk, offset, done);
        return;
      }
      const n = Math.min(SLOT_SIZE - this.#fill, chunk.length - offset);
      chunk.copy(this.#view, this.#slot * SLOT_SIZE + this.#fill, offset, offset + n);
      this.#fill += n;
      offset += n;
      if (this.#fill === SLOT_SIZE) this.#post();
    }
    done();
  }

  /** Hands the current slot to every worker and moves to the next one. */
  #post(): void {
    const slot = this.#slot;
    this.#busy[slot] = this.#workers.length;
    for (const worker of this.#workers) worker.postMessage({ t: 'update', id: this.#id, slot, offset: slot * SLOT_SIZE, length: this.#fill });
    this.#slot = (slot + 1) % SLOTS;
    this.#fill = 0;
  }
}
