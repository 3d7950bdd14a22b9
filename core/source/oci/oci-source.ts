import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { isVisorError, VisorError } from '../../errors.js';
import { propertyKeyPattern } from '../../image/schema.js';
import { metadataFromAnnotations } from '../../wire/oci/annotations.js';
import { OciClient, type OciClientOptions } from '../../wire/oci/client.js';
import { type Descriptor, digestPattern, mediaTypes } from '../../wire/oci/media.js';
import {
  type Source,
  type SourceCapabilities,
  type SourceDownload,
  type SourceEntry,
  type SourceListing,
  type SourceListOptions,
  type SourceOpenOptions,
  type SourceRefusal,
  sourceError,
} from '../port.js';

export interface OciSourceOptions extends OciClientOptions {
  repository: string;
  /** Only these tags (each must be a disk artifact). */
  tags?: readonly string[];
  /** Only tags that match (a regular expression, anchored by the caller if wanted). */
  tagPattern?: string;
  /** Disk layer media types accepted (default: `application/x-qemu-disk`). */
  layerMediaTypes?: readonly string[];
}

/**
 * An OCI repository as an image source: the ORAS-style disk artifacts EGI publishes (an image
 * manifest with one `application/x-qemu-disk` layer, with an artifact type or a config media
 * type, and Glance-named annotations), directly or through an image index that points to one.
 * One entry per tag: key `REPOSITORY:TAG`, version the image manifest's digest (a tag that
 * moves is a new version). The list is refused whole, with the reason, when a selected tag is
 * not such an artifact (unknown media types, several layers, an index of several images), a
 * manifest is over the size cap, or the registry answers bytes that do not match their digest.
 * No registry signs these artifacts: the layer's sha256, from the manifest the registry served
 * under that digest, is all that vouches for the bytes (checked while they stream).
 */
export class OciSource implements Source {
  readonly kind = 'oci';
  readonly capabilities: SourceCapabilities = { resume: false, signed: false };
  readonly #client: OciClient;
  readonly #registry: string;
  readonly #repository: string;
  readonly #tags: ReadonlySet<string> | undefined;
  readonly #pattern: RegExp | undefined;
  readonly #layerTypes: readonly string[];
  /** The entries of the last snapshot, by key: what `open` offers. */
  #offered = new Map<string, SourceEntry>();

  constructor(options: OciSourceOptions) {
    const { repository, tags, tagPattern, layerMediaTypes, ...client } = options;
    this.#client = new OciClient(client);
    this.#registry = options.registry;
    this.#repository = repository;
    this.#tags = tags ? new Set(tags) : undefined;
    this.#pattern = tagPattern !== undefined ? new RegExp(tagPattern) : undefined;
    this.#layerTypes = layerMediaTypes ?? [mediaTypes.qemuDisk];
  }

  async list(options: SourceListOptions = {}): Promise<SourceListing> {
    options.signal?.throwIfAborted();
    const where = `${this.#registry}/${this.#repository}`;
    const all = await this.#guard(() => this.#client.listTags(this.#repository, signalOf(options.signal)), 'listing');
    const tags = all.filter((t) => (!this.#tags || this.#tags.has(t)) && (!this.#pattern || this.#pattern.test(t)));
    for (const wanted of this.#tags ?? []) {
      if (!all.includes(wanted)) throw sourceError('malformed', `${where} has no tag ${wanted}`);
    }
    const entries: SourceEntry[] = [];
    for (const tag of tags.sort()) entries.push(await this.#entry(tag, options.signal));
    const revision = createHash('sha256')
      .update(entries.map((e) => `${e.key}@${e.version}`).join('\n'))
      .digest('hex');
    this.#offered = new Map(entries.map((e) => [e.key, e]));
    if (options.previous === revision) return { unchanged: true, cursor: revision };
    return { revision, cursor: revision, title: where, entries };
  }

  async open(entry: SourceEntry, options: SourceOpenOptions = {}): Promise<SourceDownload> {
    options.signal?.throwIfAborted();
    const offered = this.#offered.get(entry.key);
    const layer = offered && offered.version === entry.version ? this.#layerOf(offered) : undefined;
    if (!offered || !layer || offered.location.url !== entry.location.url) {
      const where = `${this.#registry}/${this.#repository}`;
      throw new VisorError('notFound', `${where} offers no ${entry.key} at ${entry.version}`, {
        details: { key: entry.key },
      });
    }
    const got = await this.#guard(() => this.#client.getBlob(this.#repository, layer, options.signal), 'downloading');
    // Whatever fails in the stream (the digest, the length) is the `digest` refusal of this entry.
    const out = new PassThrough();
    got.stream.once('error', (error) => out.destroy(asRefusal(error, 'digest')));
    got.stream.pipe(out);
    out.once('close', () => got.stream.destroy());
    return { stream: out as Readable, offset: 0, size: got.size };
  }

  async close(): Promise<void> {
    await this.#client.close();
  }

  #layerOf(entry: SourceEntry): { digest: string; size: number } | undefined {
    const digest = /@(sha256:[0-9a-f]{64})$/.exec(entry.location.url)?.[1];
    return digest && entry.size !== undefined ? { digest, size: entry.size } : undefined;
  }

  /** One tag as an entry: its manifest (through an index that points to one), checked. */
  async #entry(tag: string, signal?: AbortSignal): Promise<SourceEntry> {
    const at = `${this.#registry}/${this.#repository}:${tag}`;
    let result = await this.#guard(() => this.#client.getManifest(this.#repository, tag, signal), `reading ${tag}`);
    let parsed = this.#guard(() => this.#client.parseManifest(result, at), `reading ${tag}`);
    let indexAnnotations: Record<string, string> = {};
    if ('index' in parsed) {
      const images = parsed.index.manifests.filter(
        (m) => m.artifactType === undefined || this.#layerTypes.includes(m.artifactType),
      );
      if (images.length !== 1) {
        throw sourceError('malformed', `${at} is an index of ${images.length} images, not of one disk artifact`);
      }
      indexAnnotations = parsed.index.annotations ?? {};
      const digest = images[0]!.digest;
      result = await this.#guard(() => this.#client.getManifest(this.#repository, digest, signal), `reading ${tag}`);
      parsed = this.#guard(() => this.#client.parseManifest(result, at), `reading ${tag}`);
      if ('index' in parsed) throw sourceError('malformed', `${at}: an index that points to another index`);
    }
    const manifest = parsed.manifest;
    const layers = manifest.layers;
    if (layers.length !== 1) throw sourceError('malformed', `${at} has ${layers.length} layers, not one disk layer`);
    const layer = layers[0] as Descriptor;
    if (!this.#layerTypes.includes(layer.mediaType)) {
      throw sourceError(
        'malformed',
        `${at}: layer media type ${layer.mediaType} is not a disk image (${this.#layerTypes.join(', ')})`,
      );
    }
    if (!digestPattern.test(layer.digest)) throw sourceError('malformed', `${at}: the layer has no sha256 digest`);
    const annotations = { ...indexAnnotations, ...(manifest.annotations ?? {}) };
    const meta = metadataFromAnnotations(annotations);
    // The catalog's property names: `oci:` and the annotation's name with what it refuses (dots) as `_`.
    const properties: Record<string, string> = {
      'oci:registry': this.#registry,
      'oci:repository': this.#repository,
      'oci:tag': tag,
      'oci:digest': result.digest,
    };
    if (manifest.artifactType) properties['oci:artifact_type'] = manifest.artifactType;
    for (const [name, value] of Object.entries(annotations)) {
      const key = `oci:${name.replace(/[^A-Za-z0-9_:-]/g, '_')}`;
      if (propertyKeyPattern.test(key) && !(key in properties)) properties[key] = value;
    }
    const description = annotations['org.opencontainers.image.description'];
    return {
      key: `${this.#repository}:${tag}`,
      version: result.digest,
      name: meta.name ?? `${this.#repository}:${tag}`,
      ...(description ? { description } : {}),
      location: { url: `oci://${this.#registry}/${this.#repository}@${layer.digest}` },
      size: layer.size,
      checksums: { sha256: layer.digest.slice('sha256:'.length) },
      ...(meta.diskFormat ? { diskFormat: meta.diskFormat } : {}),
      containerFormat: 'bare',
      ...(meta.architecture ? { architecture: meta.architecture } : {}),
      ...(Object.keys(meta.os).length > 0 ? { os: meta.os } : {}),
      properties,
    };
  }

  /** The client's failures as the port's refusals: unreachable (retry), digest, malformed. */
  #guard<T>(call: () => T, what: string): T {
    try {
      const value = call();
      if (value instanceof Promise) {
        return value.catch((error: unknown) => {
          throw refusalFor(error, `${this.#registry}/${this.#repository}: ${what}`);
        }) as T;
      }
      return value;
    } catch (error) {
      throw refusalFor(error, `${this.#registry}/${this.#repository}: ${what}`);
    }
  }
}

const signalOf = (signal: AbortSignal | undefined) => (signal ? { signal } : {});

/** A refusal keeps auth, forbidden, notFound and timeout kinds as they are: they are not the list's fault. */
function refusalFor(error: unknown, what: string): unknown {
  if (!isVisorError(error) || error.details?.['reason'] !== undefined) return error;
  const reason: SourceRefusal | undefined = {
    unavailable: 'unreachable' as const,
    integrity: 'digest' as const,
    invalidResponse: 'malformed' as const,
    tooLarge: 'malformed' as const,
    unsupported: 'malformed' as const,
  }[error.kind as string];
  if (!reason) return error;
  return sourceError(reason, `${what}: ${error.message}`, { cause: error });
}

function asRefusal(error: unknown, reason: SourceRefusal): VisorError {
  const message = error instanceof Error ? error.message : String(error);
  return sourceError(reason, message, { cause: error });
}
