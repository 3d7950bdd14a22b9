import { createHash } from 'node:crypto';
import { VisorError } from '../../errors.js';
import { httpReader } from '../../store/http/plugin.js';
import type { Store } from '../../store/port.js';
import { issuerDn, sameDn, subjectDn } from '../dn.js';
import { fetchDocument, openUrl, redact } from '../fetch.js';
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
import { looksSigned, verifySmime, type SmimeTrust } from '../smime.js';
import { compareVersions, hepixEntry, parseHepixList } from './list.js';

export interface Endorser {
  dn: string;
  /** The issuing CA's DN; any CA the trust anchors accept when absent. */
  ca?: string;
}

export interface HepixSourceOptions extends SmimeTrust {
  url: string;
  /** Endorsers this subscription accepts; the list's signer must be one of them (when any are given). */
  endorsers?: readonly Endorser[];
  /** Off only for lists published unsigned; a signed list is verified all the same. */
  requireSignature?: boolean;
  /** Lists and images on loopback/private addresses (an internal mirror, tests). */
  allowPrivateNetworks?: boolean;
  clock?: () => Date;
}

interface Cursor {
  digest: string;
  version: string;
}

const encode = (cursor: Cursor) => `hepix:${cursor.digest}:${cursor.version}`;
function decode(text: string | undefined): Cursor | undefined {
  const match = /^hepix:([0-9a-f]{64}):(.*)$/s.exec(text ?? '');
  return match ? { digest: match[1]!, version: match[2]! } : undefined;
}

/**
 * A HEPiX image list (EGI AppDB, vmcatcher): an S/MIME signed JSON document. Trust follows the
 * strictest peer (atrope): the signature verifies against the configured CAs, the signer is the
 * endorser the list itself names (DN and CA), and one of the endorsers the subscription accepts;
 * the list is not expired, and its version never goes back (vmcatcher).
 */
export class HepixSource implements Source {
  readonly kind = 'hepix';
  readonly capabilities: SourceCapabilities;
  readonly #o: HepixSourceOptions;
  readonly #http: Store;
  #offered = new Map<string, SourceEntry>();

  constructor(options: HepixSourceOptions) {
    this.#o = options;
    if ((options.requireSignature ?? true) && !options.caPath && !options.caFile) {
      throw new VisorError('config', 'a signed HEPiX list needs caPath or caFile (or requireSignature: false)');
    }
    this.capabilities = { resume: true, signed: options.requireSignature ?? true };
    this.#http = httpReader({ allowPrivateNetworks: options.allowPrivateNetworks ?? false });
  }

  async list(options: SourceListOptions = {}): Promise<SourceListing> {
    const raw = await fetchDocument(this.#http, this.#o.url, options.signal);
    const digest = createHash('sha256').update(raw).digest('hex');
    const previous = decode(options.previous);
    if (previous?.digest === digest) return { unchanged: true, cursor: options.previous! };
    const signed = looksSigned(raw);
    if (!signed && (this.#o.requireSignature ?? true)) {
      throw sourceError('unsigned', `the image list ${redact(this.#o.url)} is not signed; refusing it`);
    }
    const verified = signed ? await verifySmime(raw, this.#o, options.signal) : undefined;
    const list = parseHepixList(verified?.content ?? raw);
    const where = `image list ${list['dc:identifier']} (${redact(this.#o.url)})`;
    let signer = '';
    if (verified) {
      signer = subjectDn(verified.signer);
      const issuer = issuerDn(verified.signer);
      const named = list['hv:endorser']['hv:x509'];
      if (!sameDn(named['hv:dn'], signer) || !sameDn(named['hv:ca'], issuer)) {
        throw sourceError('endorser', `${where} names endorser ${named['hv:dn']} (CA ${named['hv:ca']}) but is signed by ${signer} (CA ${issuer})`);
      }
      const accepted = this.#o.endorsers ?? [];
      if (accepted.length > 0 && !accepted.some((e) => sameDn(e.dn, signer) && (!e.ca || sameDn(e.ca, issuer)))) {
        throw sourceError('endorser', `${where} is signed by ${signer}, who is not an endorser this subscription accepts`);
      }
    }
    const now = (this.#o.clock ?? (() => new Date()))();
    const expires = new Date(list['dc:date:expires']);
    if (expires.getTime() <= now.getTime()) {
      throw sourceError('expired', `${where} expired on ${expires.toISOString()}`);
    }
    const version = list['hv:version'];
    if (previous) {
      const order = compareVersions(version, previous.version);
      if (order < 0) throw sourceError('rollback', `${where} has version ${version}, older than the accepted ${previous.version}`);
      if (order === 0) {
        throw sourceError('rollback', `${where} changed without a new version (still ${version}): refusing the republished list`);
      }
    }
    const entries = list['hv:images'].map(({ 'hv:image': image }) => hepixEntry(list, image, signer));
    this.#offered = new Map(entries.map((e) => [e.key, e]));
    return {
      revision: version,
      cursor: encode({ digest, version }),
      ...(list['dc:title'] ? { title: list['dc:title'] } : {}),
      expiresAt: expires.toISOString(),
      ...(signer ? { signer } : {}),
      entries,
    };
  }

  async open(entry: SourceEntry, options: SourceOpenOptions = {}): Promise<SourceDownload> {
    const offered = this.#offered.get(entry.key);
    if (!offered || offered.version !== entry.version) {
      throw new VisorError('notFound', `the image list does not offer ${entry.key} version ${entry.version}`);
    }
    // The URL is the one the verified list gave, whatever the caller's copy says.
    return openUrl(this.#http, offered.location.url, options.offset ?? 0, options.signal);
  }

  async close(): Promise<void> {
    await this.#http.close();
  }
}
