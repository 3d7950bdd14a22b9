import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Catalog } from '../../core/catalog/port.js';
import { VisorError } from '../../core/errors.js';
import { convertImage, inspectImage, openFileReader, type InspectionReport } from '../../core/formats/index.js';
import type { ContentSource, DriverCapabilities } from '../../core/iaas/port.js';
import type { Checksums, DiskFormat, Image } from '../../core/image/model.js';
import type { Store } from '../../core/store/port.js';
import { digestStored } from '../../core/store/digest-stored.js';
import { storeReader } from '../../core/store/store-reader.js';
import { allChecksums, verifyDigest } from '../../core/transfer/digest.js';
import type { DesiredImage } from './desired.js';

/** A converted (or materialised) copy kept in the default store, found again by content and format. */
export interface Artifact {
  store: string;
  uri: string;
  size: number;
  checksums: Required<Checksums>;
  format: DiskFormat;
}

export interface ContentDeps {
  catalog: Catalog;
  stores: ReadonlyMap<string, Store>;
  defaultStore: string;
  cacheDir: string;
  capabilities: DriverCapabilities;
  signal?: AbortSignal;
  /** Makes a one-time URL for clouds that fetch images themselves (OpenNebula). */
  publish?: (source: ContentSource) => string;
  /** Paces a stream of the final bytes read from store `store` (the cloud's and the store's bandwidth limits). */
  pace?: (store: string, stream: Readable) => Readable;
  /** Told when a long step begins: `converting` while qemu-img makes the cloud's format. */
  onPhase?: (phase: ContentPhase, detail: string) => void;
}

export type ContentPhase = 'converting';

export interface PreparedContent {
  source: ContentSource;
  /** What the safety inspection found about the bytes that go to the cloud. */
  inspection: InspectionReport;
  /** The catalog image's content sha256 (the marker), known even for references that came without it. */
  sha256: string;
}

/** A local path for a file-store URI (fast inspection, and qemu-img input without a copy). */
function localPath(store: Store, uri: string): string | undefined {
  return store.kind === 'file' && uri.startsWith('file:') ? fileURLToPath(uri) : undefined;
}

async function inspectAt(
  store: Store,
  uri: string,
  size: number,
  declared: DiskFormat | undefined,
  container: Image['containerFormat'],
): Promise<InspectionReport> {
  const path = localPath(store, uri);
  const options = { ...(declared ? { declared } : {}), ...(container ? { container } : {}) };
  if (!path) return inspectImage(storeReader(store, uri, size), options);
  const reader = await openFileReader(path);
  try {
    return await inspectImage(reader, options);
  } finally {
    await reader.close();
  }
}

const artifactKey = (sha256: string, format: DiskFormat) => `artifact:${sha256}:${format}`;

/**
 * Gets a catalog image's bytes ready for one cloud: inspected for safety before anything else
 * (a refusal means the image never reaches a cloud), converted with qemu-img when the cloud
 * needs another format (converted artifacts are kept in the default store by (sha256, format)
 * and reused), and offered as a ContentSource that can be opened again for every retry.
 */
export async function prepareContent(image: Image, desired: DesiredImage, deps: ContentDeps): Promise<PreparedContent> {
  if (!image.location) throw new VisorError('conflict', `image ${image.id} has no bits (status ${image.status})`);
  const store = deps.stores.get(image.location.store);
  if (!store)
    throw new VisorError(
      'unavailable',
      `image ${image.id} is in store "${image.location.store}", which is not configured`,
    );
  let artifact: Artifact;
  let sha256 = image.checksums.sha256;

  if (sha256 && image.size !== undefined && image.checksumsPending?.length) {
    // Uploaded, its md5/sha512 not computed yet (the server does that off the request path):
    // read once here, without a copy, and checked against the sha256 the upload vouched for.
    artifact = await digestedInPlace(image, sha256, image.size, store, deps);
  } else if (!sha256 || !image.checksums.md5 || !image.checksums.sha512 || image.size === undefined) {
    // A reference registered without checksums: copy it once into the default store, computing them.
    artifact = await materialise(image, store, deps);
    sha256 = artifact.checksums.sha256;
  } else {
    artifact = {
      store: image.location.store,
      uri: image.location.uri,
      size: image.size,
      checksums: { md5: image.checksums.md5, sha256, sha512: image.checksums.sha512 },
      format: image.diskFormat ?? 'raw',
    };
  }

  const sourceStore = deps.stores.get(artifact.store)!;
  const report = await inspectAt(sourceStore, artifact.uri, artifact.size, image.diskFormat, image.containerFormat);
  if (report.containerFormat === 'ova')
    throw new VisorError(
      'unsupported',
      `image ${image.id} is an OVA; extract its disk into an image of its own to sync it`,
    );
  artifact = { ...artifact, format: report.format };
  const wanted = chooseFormat(desired.diskFormat ?? report.format, deps.capabilities);
  if (wanted !== report.format) artifact = await converted(artifact, sha256, wanted, deps);

  const final = deps.stores.get(artifact.store)!;
  const { uri, store: from } = artifact;
  const pace = deps.pace ?? ((_store: string, stream: Readable) => stream);
  const source: ContentSource = {
    size: artifact.size,
    checksums: artifact.checksums,
    diskFormat: artifact.format,
    containerFormat: 'bare',
    open: async (range) =>
      pace(
        from,
        (await final.get(uri, { ...(range ? { range } : {}), ...(deps.signal ? { signal: deps.signal } : {}) })).stream,
      ),
  };
  if (deps.publish) source.url = deps.publish(source);
  return { source, inspection: report, sha256 };
}

async function digestedInPlace(
  image: Image,
  sha256: string,
  size: number,
  store: Store,
  deps: ContentDeps,
): Promise<Artifact> {
  const location = image.location!;
  const read = await digestStored(store, location.uri, deps.signal);
  verifyDigest(read, { size, checksums: { ...image.checksums, sha256 } });
  const format = image.diskFormat ?? 'raw';
  return { store: location.store, uri: location.uri, size, checksums: read.checksums, format };
}

function chooseFormat(wanted: DiskFormat, capabilities: DriverCapabilities): DiskFormat {
  if (capabilities.diskFormats.includes(wanted)) return wanted;
  const fallback = (['qcow2', 'raw', 'vmdk', 'vhd', 'vhdx', 'vdi'] as const).find((f) =>
    capabilities.diskFormats.includes(f),
  );
  if (!fallback)
    throw new VisorError(
      'unsupported',
      `the cloud accepts none of the formats visor can convert to (it takes ${capabilities.diskFormats.join(', ')})`,
    );
  return fallback;
}

/** The (sha256, format) artifact: from the cache when it is still there, else made with qemu-img. */
async function converted(source: Artifact, sha256: string, to: DiskFormat, deps: ContentDeps): Promise<Artifact> {
  const cached = await deps.catalog.state.get<Artifact>(artifactKey(sha256, to));
  if (cached) {
    const store = deps.stores.get(cached.store);
    const alive = store
      ? await store.head(cached.uri).then(
          (info) => info.size === cached.size,
          () => false,
        )
      : false;
    if (alive) return cached;
    await deps.catalog.state.delete(artifactKey(sha256, to));
  }
  deps.onPhase?.('converting', `${source.format} -> ${to}`);
  await mkdir(deps.cacheDir, { recursive: true, mode: 0o700 });
  const work = join(deps.cacheDir, `convert-${randomBytes(6).toString('hex')}`);
  await mkdir(work, { mode: 0o700 });
  try {
    const sourceStore = deps.stores.get(source.store)!;
    let input = localPath(sourceStore, source.uri);
    if (!input) {
      // qemu-img needs a file: bring the source here once (streamed).
      input = join(work, `input.${source.format}`);
      await pipeline(
        (await sourceStore.get(source.uri, deps.signal ? { signal: deps.signal } : {})).stream,
        createWriteStream(input, { mode: 0o600 }),
      );
    }
    await verifySource(input, source, deps.signal);
    const output = join(work, `output.${to}`);
    await convertImage({ input, from: source.format, to, output, ...(deps.signal ? { signal: deps.signal } : {}) });
    const target = deps.stores.get(deps.defaultStore)!;
    const put = await target.put(
      `art-${sha256}-${to}`,
      createReadStream(output),
      deps.signal ? { signal: deps.signal } : {},
    );
    const checksums = allChecksums(put.checksums, `the conversion of ${source.uri}`);
    const artifact: Artifact = { store: deps.defaultStore, uri: put.uri, size: put.size, checksums, format: to };
    await deps.catalog.state.set(artifactKey(sha256, to), artifact);
    return artifact;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Checks that the bytes about to be converted are those the catalog vouches for. A conversion
 * computes fresh checksums for what it writes, which every later check agrees with: corrupt or
 * tampered source bytes must be caught here, or they reach the cloud as a valid-looking image.
 */
async function verifySource(path: string, source: Artifact, signal?: AbortSignal): Promise<void> {
  const hash = createHash('sha256');
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      hash.update(chunk);
      callback();
    },
  });
  await pipeline(createReadStream(path), sink, signal ? { signal } : {});
  try {
    verifyDigest(
      { size, checksums: { sha256: hash.digest('hex') } },
      { size: source.size, checksums: { sha256: source.checksums.sha256 } },
    );
  } catch (error) {
    throw new VisorError(
      'integrity',
      `the stored image is not what the catalog recorded, refusing to convert ` +
        `it: ${(error as Error).message.replace(/^content does not match: /, '')}`,
      { cause: error },
    );
  }
}

/** Copies an image whose checksums are unknown into the default store, computing them on the way. */
async function materialise(image: Image, store: Store, deps: ContentDeps): Promise<Artifact> {
  const key = `ref:${image.id}:${image.revision}`;
  const cached = await deps.catalog.state.get<Artifact>(key);
  if (cached) return cached;
  const target = deps.stores.get(deps.defaultStore)!;
  const { stream } = await store.get(image.location!.uri, deps.signal ? { signal: deps.signal } : {});
  const put = await target.put(`ref-${image.id}`, stream, deps.signal ? { signal: deps.signal } : {});
  const checksums = allChecksums(put.checksums, `the copy of image ${image.id}`);
  const format = image.diskFormat ?? 'raw';
  const artifact: Artifact = { store: deps.defaultStore, uri: put.uri, size: put.size, checksums, format };
  await deps.catalog.state.set(key, artifact);
  return artifact;
}
