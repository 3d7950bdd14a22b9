import { Readable } from 'node:stream';
import { OciClient, type OciClientOptions } from '../../core/wire/oci/client.js';
import { emptyConfig, mediaTypes } from '../../core/wire/oci/media.js';
import { parseArtifactManifest, type ArtifactManifest } from './schema.js';

export type { OciClientOptions } from '../../core/wire/oci/client.js';

/** One manifest as the driver reads it: the tag, its digest and the checked artifact manifest. */
export interface TaggedArtifact {
  tag: string;
  digest: string;
  manifest: ArtifactManifest;
}

/**
 * The oci target's wire client: one repository of one registry, on the distribution client
 * every OCI part of visor shares (core/wire/oci). It knows ORAS-style disk artifacts — an
 * image manifest, the empty config, one `application/x-qemu-disk` layer — and nothing of
 * visor's images (that is the mapper's).
 */
export class ArtifactRepository {
  readonly #client: OciClient;
  readonly registry: string;
  readonly repository: string;

  constructor(options: OciClientOptions & { repository: string }) {
    const { repository, ...client } = options;
    this.#client = new OciClient(client);
    this.registry = options.registry;
    this.repository = repository;
  }

  /** Every tag, every page followed. */
  tags(pageSize: number, signal?: AbortSignal): Promise<string[]> {
    return this.#client.listTags(this.repository, { pageSize, ...(signal ? { signal } : {}) });
  }

  /** The artifact a tag names; `notFound` when there is no such tag. */
  async read(tag: string, signal?: AbortSignal): Promise<TaggedArtifact> {
    const result = await this.#client.getManifest(this.repository, tag, signal);
    const where = `${this.registry}/${this.repository}:${tag}`;
    return { tag, digest: result.digest, manifest: parseArtifactManifest(result, where) };
  }

  /** Digest of the manifest a tag names, or undefined. */
  async digestOf(tag: string): Promise<string | undefined> {
    return (await this.#client.headManifest(this.repository, tag))?.digest;
  }

  /** Uploads the disk layer (skipped when the repository has it) and the empty config. */
  async pushLayer(
    layer: { digest: string; size: number; open(range?: { start: number; end: number }): Promise<Readable> },
    options: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
  ): Promise<void> {
    const config = {
      digest: emptyConfig.digest,
      size: emptyConfig.size,
      open: async () => Readable.from([Buffer.from(emptyConfig.bytes)]),
    };
    await this.#client.pushBlob(this.repository, config, options.signal ? { signal: options.signal } : {});
    await this.#client.pushBlob(this.repository, layer, options);
  }

  /** Puts a manifest under a tag; returns its digest. */
  putManifest(tag: string, bytes: Buffer): Promise<string> {
    return this.#client.putManifest(this.repository, tag, bytes, mediaTypes.ociManifest);
  }

  deleteManifest(digest: string): Promise<void> {
    return this.#client.deleteManifest(this.repository, digest);
  }

  /** Size of a blob the repository holds, or undefined. */
  blobSize(digest: string): Promise<number | undefined> {
    return this.#client.headBlob(this.repository, digest);
  }

  blob(layer: { digest: string; size: number }, signal?: AbortSignal) {
    return this.#client.getBlob(this.repository, layer, signal);
  }

  close(): Promise<void> {
    return this.#client.close();
  }
}
