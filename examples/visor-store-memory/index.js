// A complete third-party visor plugin in one file: a store that keeps objects in memory.
// It imports visor's plugin API from the host ('visor' is a peer dependency) and brings no
// other dependency: its options schema is a hand-written Standard Schema (zod would do too).
import { DigestStream, VisorError, checkRange, definePlugin, objectKeyPattern, verifyDigest } from 'visor';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';

/** @type {import('visor').StandardSchemaV1<unknown, { maxBytes: number }>} */
const optionsSchema = {
  '~standard': {
    version: 1,
    vendor: 'visor-store-memory',
    validate(value) {
      const input = value ?? {};
      if (typeof input !== 'object' || Array.isArray(input)) return { issues: [{ message: 'must be a mapping' }] };
      const issues = Object.keys(input)
        .filter((key) => key !== 'maxBytes')
        .map((key) => ({ message: 'unknown key', path: [key] }));
      const maxBytes = input.maxBytes ?? 64 * 1024 * 1024;
      if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0)
        issues.push({ message: 'must be a positive whole number of bytes', path: ['maxBytes'] });
      return issues.length > 0 ? { issues } : { value: { maxBytes } };
    },
  },
};

/** @implements {import('visor').Store} */
class MemoryStore {
  kind = 'memory';
  capabilities = { writable: true, ranges: true };
  /** @type {Map<string, Buffer>} */
  #objects = new Map();
  #used = 0;

  constructor(maxBytes) {
    this.maxBytes = maxBytes;
  }

  async put(key, body, options = {}) {
    if (!objectKeyPattern.test(key)) throw new VisorError('invalidInput', `invalid object key "${key}"`);
    const digest = new DigestStream();
    const chunks = [];
    let size = 0;
    await pipeline(
      body,
      digest,
      async (source) => {
        for await (const chunk of source) {
          size += chunk.length;
          if (this.#used + size > this.maxBytes)
            throw new VisorError('unavailable', `memory store is full (${this.maxBytes} bytes)`);
          chunks.push(chunk);
        }
      },
      ...(options.signal ? [{ signal: options.signal }] : []),
    );
    const result = digest.result();
    verifyDigest(result, { size: options.size, checksums: options.expected });
    const uri = `memory:${key}/${randomUUID()}`;
    this.#objects.set(uri, Buffer.concat(chunks));
    this.#used += size;
    return { uri, ...result };
  }

  async get(uri, options = {}) {
    const data = this.#find(uri);
    if (!options.range) return { stream: Readable.from([data]), size: data.length };
    const { start, end } = checkRange(options.range, data.length);
    return { stream: Readable.from([data.subarray(start, end + 1)]), size: data.length, range: { start, end } };
  }

  async head(uri) {
    return { size: this.#find(uri).length, checksums: {} };
  }

  async delete(uri) {
    const data = this.#objects.get(uri);
    if (data) this.#used -= data.length;
    this.#objects.delete(uri);
  }

  async close() {}

  #find(uri) {
    const data = this.#objects.get(uri);
    if (!data) throw new VisorError('notFound', `no object at ${uri}`);
    return data;
  }
}

// definePlugin makes the plugin (its container binding included) from each product's options
// schema and factory; a package may define any number of catalogs, stores and adapters at once.
export default definePlugin({
  stores: {
    memory: {
      description: 'Images kept in memory (example third-party plugin)',
      optionsSchema,
      create: (options) => new MemoryStore(options.maxBytes),
    },
  },
});
