import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { VisorError } from '../errors.js';
import type {
  Source,
  SourceCapabilities,
  SourceDownload,
  SourceEntry,
  SourceListing,
  SourceListOptions,
  SourceOpenOptions,
} from './port.js';

/** An entry and its bytes; checksums and size are computed unless given (to model a lying list). */
export interface MemorySourceEntry extends Omit<SourceEntry, 'checksums' | 'location' | 'properties'> {
  data: Buffer;
  checksums?: SourceEntry['checksums'];
  properties?: Record<string, string>;
}

/**
 * A source held in memory: for embedding applications and fast importer tests, the way
 * MemoryDriver is for clouds. `set` replaces the list (a new revision), as a publisher would.
 */
export class MemorySource implements Source {
  readonly kind = 'memory';
  readonly capabilities: SourceCapabilities = { resume: true, signed: false };
  #entries = new Map<string, { entry: SourceEntry; data: Buffer }>();
  #revision = 0;
  /** Bytes handed out by `open`, for tests that check what was (not) downloaded again. */
  bytesServed = 0;
  opens = 0;

  constructor(entries: MemorySourceEntry[] = []) {
    this.set(entries);
  }

  set(entries: MemorySourceEntry[]): void {
    this.#entries = new Map();
    for (const { data, checksums, properties, ...rest } of entries) {
      const entry: SourceEntry = {
        ...rest,
        size: rest.size ?? data.length,
        checksums: checksums ?? {
          sha256: createHash('sha256').update(data).digest('hex'),
          sha512: createHash('sha512').update(data).digest('hex'),
        },
        location: { url: `memory:///${encodeURIComponent(rest.key)}/${encodeURIComponent(rest.version)}` },
        properties: properties ?? {},
      };
      this.#entries.set(rest.key, { entry, data });
    }
    this.#revision += 1;
  }

  async list(options: SourceListOptions = {}): Promise<SourceListing> {
    options.signal?.throwIfAborted();
    const cursor = String(this.#revision);
    if (options.previous === cursor) return { unchanged: true, cursor };
    return { revision: cursor, cursor, entries: [...this.#entries.values()].map((e) => structuredClone(e.entry)) };
  }

  async open(entry: SourceEntry, options: SourceOpenOptions = {}): Promise<SourceDownload> {
    options.signal?.throwIfAborted();
    const held = this.#entries.get(entry.key);
    if (!held || held.entry.version !== entry.version) {
      throw new VisorError('notFound', `memory source has no entry ${entry.key} version ${entry.version}`);
    }
    const offset = Math.min(Math.max(0, options.offset ?? 0), held.data.length);
    const rest = held.data.subarray(offset);
    this.opens += 1;
    this.bytesServed += rest.length;
    return { stream: Readable.from([rest]), offset, size: held.data.length };
  }

  async close(): Promise<void> {}
}
