import { Worker } from 'node:worker_threads';
import { VisorError } from '../errors.js';

// The worker: one running sha256, fed blocks in order; answers each update (so that the caller
// knows when it may reuse the block's memory) and the digest.
const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let hash = createHash('sha256');
parentPort.on('message', (message) => {
  if (message === 'digest') {
    parentPort.postMessage(hash.digest('hex'));
    hash = createHash('sha256');
    return;
  }
  hash.update(message);
  parentPort.postMessage(0);
});
`;

/**
 * A sha256 computed on a worker thread, so that hashing runs beside the receiving and writing
 * instead of between them. Blocks in shared memory (a SharedArrayBuffer) reach the worker without
 * a copy; any other block is copied once. The caller must not change a block until its `update`
 * has resolved. `close` ends the worker; a worker that dies fails what is pending.
 */
export class OffThreadSha256 {
  readonly #worker: Worker;
  readonly #pending: { resolve: (value: unknown) => void; reject: (error: Error) => void }[] = [];
  #failure: Error | undefined;

  constructor() {
    this.#worker = new Worker(workerSource, { eval: true });
    this.#worker.on('message', (value: unknown) => this.#pending.shift()?.resolve(value));
    const fail = (error: Error) => {
      this.#failure ??= new VisorError('internal', `the sha256 worker failed: ${error.message}`, { cause: error });
      for (const p of this.#pending.splice(0)) p.reject(this.#failure);
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`it exited (code ${code})`)));
  }

  update(block: Uint8Array): Promise<void> {
    if (block.buffer instanceof SharedArrayBuffer) return this.#send(block).then(() => undefined);
    const copy = new Uint8Array(block);
    return this.#send(copy, [copy.buffer]).then(() => undefined);
  }

  /** The hex digest of everything updated so far (in order); the hash starts anew afterwards. */
  async digest(): Promise<string> {
    return String(await this.#send('digest'));
  }

  async close(): Promise<void> {
    this.#worker.removeAllListeners('exit');
    this.#failure ??= new VisorError('internal', 'the sha256 worker was closed');
    for (const p of this.#pending.splice(0)) p.reject(this.#failure);
    await this.#worker.terminate();
  }

  #send(message: unknown, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#worker.postMessage(message, transfer);
    });
  }
}
