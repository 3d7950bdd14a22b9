import { createHash } from 'node:crypto';
import { VisorError } from '../../errors.js';
import { httpReader } from '../../store/http/plugin.js';
import type { Store } from '../../store/port.js';
import { fetchDocument, openUrl, redact } from '../fetch.js';
import { matches, parseFilter, type EntryFilter } from '../filter.js';
import { looksClearsigned, verifyClearsigned } from '../openpgp.js';
import {
  sourceError,
  type Source,
  type SourceCapabilities,
  type SourceDownload,
  type SourceEntry,
  type SourceListing,
  type SourceListOptions,
  type SourceOpenOptions,
} from '../port.js';
import {
  checkPath,
  flattenProducts,
  itemEntry,
  newestVersions,
  parseJson,
  readIndex,
  type FlatItem,
} from './streams.js';

export interface SimplestreamsSourceOptions {
  /** The mirror root, e.g. https://cloud-images.ubuntu.com/releases/ (paths are relative to it). */
  url: string;
  /** The index, relative to the root. */
  index?: string;
  /** An OpenPGP keyring (binary, as `gpg --export` writes): documents must then be signed by one of its keys. */
  keyring?: string;
  /** Only these content ids of the index. */
  contentIds?: readonly string[];
  /** Item types to offer (`ftype`). */
  ftypes?: readonly string[];
  /** simplestreams filters on the flattened item (`release=jammy`, `arch~amd64|arm64`), before versions are chosen. */
  filters?: readonly string[];
  allowPrivateNetworks?: boolean;
}

/**
 * A simplestreams mirror (Canonical cloud images, MAAS, private mirrors): an `index:1.0` and the
 * `products:1.0` documents it names. With a keyring every document must be an OpenPGP
 * cleartext-signed `.sjson` that gpgv verifies; checksums and sizes are always checked (by the
 * importer, while downloading). Offers the newest version of each product's image items.
 */
export class SimplestreamsSource implements Source {
  readonly kind = 'simplestreams';
  readonly capabilities: SourceCapabilities;
  readonly #o: SimplestreamsSourceOptions;
  readonly #root: URL;
  readonly #http: Store;
  readonly #filters: EntryFilter[];
  #offered = new Map<string, SourceEntry>();

  constructor(options: SimplestreamsSourceOptions) {
    this.#o = options;
    this.#root = new URL(options.url.endsWith('/') ? options.url : `${options.url}/`);
    this.#filters = (options.filters ?? []).map(parseFilter);
    this.capabilities = { resume: true, signed: options.keyring !== undefined };
    this.#http = httpReader({ allowPrivateNetworks: options.allowPrivateNetworks ?? false });
  }

  async list(options: SourceListOptions = {}): Promise<SourceListing> {
    const indexPath = checkPath(
      this.#o.index ?? (this.#o.keyring ? 'streams/v1/index.sjson' : 'streams/v1/index.json'),
      'index',
    );
    const digest = createHash('sha256');
    const signers = new Set<string>();
    const index = await this.#document(indexPath, digest, signers, options.signal);
    const items: FlatItem[] = [];
    let updated = typeof index['updated'] === 'string' ? index['updated'] : '';
    for (const entry of readIndex(index, this.#o.contentIds)) {
      const products = await this.#document(entry.path, digest, signers, options.signal);
      if (typeof products['updated'] === 'string' && products['updated'] > updated) updated = products['updated'];
      items.push(...flattenProducts(products, entry.contentId));
    }
    const cursor = `simplestreams:${digest.digest('hex')}`;
    if (options.previous === cursor) return { unchanged: true, cursor };
    const ftypes = this.#o.ftypes ?? ['disk1.img', 'disk-kvm.img', 'disk.img', 'qcow2'];
    const wanted = items.filter((i) => ftypes.includes(i.fields['ftype'] ?? '') && this.#matches(i));
    const entries = newestVersions(wanted).map((i) => itemEntry(i, this.#root));
    const seen = new Set<string>();
    for (const e of entries) {
      if (seen.has(e.key)) throw sourceError('malformed', `item ${e.key} appears twice`);
      seen.add(e.key);
    }
    this.#offered = new Map(entries.map((e) => [e.key, e]));
    return {
      revision: updated || cursor.slice(-16),
      cursor,
      ...(signers.size > 0 ? { signer: [...signers].sort().join(',') } : {}),
      entries,
    };
  }

  #matches(item: FlatItem): boolean {
    if (this.#filters.length === 0) return true;
    return matches(
      { key: '', version: '', name: '', location: { url: '' }, checksums: {}, properties: item.fields },
      this.#filters,
    );
  }

  async #document(path: string, digest: ReturnType<typeof createHash>, signers: Set<string>, signal?: AbortSignal) {
    const url = new URL(path, this.#root).href;
    const raw = await fetchDocument(this.#http, url, signal);
    digest.update(raw);
    let content = raw;
    if (this.#o.keyring) {
      if (!looksClearsigned(raw))
        throw sourceError('unsigned', `${redact(url)} is not signed, and this subscription requires signatures`);
      const verified = await verifyClearsigned(raw, this.#o.keyring, signal);
      signers.add(verified.signer);
      content = verified.content;
    } else if (looksClearsigned(raw)) {
      throw sourceError('untrusted', `${redact(url)} is signed, but no keyring is configured to verify it`);
    }
    return parseJson(content, redact(url));
  }

  async open(entry: SourceEntry, options: SourceOpenOptions = {}): Promise<SourceDownload> {
    const offered = this.#offered.get(entry.key);
    if (!offered || offered.version !== entry.version) {
      throw new VisorError('notFound', `the stream does not offer ${entry.key} version ${entry.version}`);
    }
    return openUrl(this.#http, offered.location.url, options.offset ?? 0, options.signal);
  }

  async close(): Promise<void> {
    await this.#http.close();
  }
}
