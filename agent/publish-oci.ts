import { OciDriver } from '../adapters/oci/driver.js';
import { VisorError } from '../core/errors.js';
import type { CloudImage } from '../core/iaas/port.js';
import { diskFormats, type DiskFormat } from '../core/image/model.js';
import type { OciCredentials } from '../core/wire/oci/auth.js';
import { credentialsFromAuthFile } from '../core/wire/oci/auth-file.js';
import { parseOciReference } from '../core/wire/oci/reference.js';
import type { SyncSession } from './session.js';
import { prepareContent } from './sync/content.js';

export interface PublishOptions {
  plainHttp?: boolean;
  /** Explicit credentials; otherwise the auth file's entry for the registry, if any. */
  credentials?: OciCredentials;
  authFile?: string;
  caBundle?: string;
  /** Who may pull from the repository (default private): a private image never goes to a public one. */
  access?: 'public' | 'private';
  /** Convert to this format first (default: the image's own). */
  format?: string;
  allowPrivateNetworks?: boolean;
  timeoutMs?: number;
  onProgress?: (bytes: number, total: number) => void;
}

/**
 * `visor publish ID oci://HOST/REPO:TAG`: one catalog image pushed as an ORAS-style disk
 * artifact, through the same path as a sync's create — the bits inspected before they leave
 * (and converted if asked), streamed in chunks, verified in the registry after.
 */
export async function publishToOci(
  session: SyncSession,
  id: string,
  reference: string,
  options: PublishOptions = {},
): Promise<{ reference: string; tag: string; image: CloudImage }> {
  const ref = parseOciReference(reference, 'required');
  if (ref.digest || !ref.tag)
    throw new VisorError('invalidInput', 'publish to a tag (oci://HOST/REPO:TAG), not a digest');
  const image = await session.deps.catalog.images.get(id);
  if (image.status !== 'available') {
    throw new VisorError('conflict', `image ${id} is ${image.status}: only available images are published`);
  }
  const format = options.format ?? image.diskFormat ?? 'raw';
  if (!(diskFormats as readonly string[]).includes(format)) {
    throw new VisorError('invalidInput', `--format ${format} is not a disk format (${diskFormats.join(', ')})`);
  }
  const credentials = options.credentials ?? (await credentialsFromAuthFile(ref.registry, options.authFile));
  const driver = new OciDriver({
    registry: ref.registry,
    repository: ref.repository,
    ...(options.plainHttp ? { plainHttp: true } : {}),
    ...(credentials ? { credentials } : {}),
    ...(options.caBundle ? { caBundle: options.caBundle } : {}),
    ...(options.allowPrivateNetworks ? { allowPrivateNetworks: true } : {}),
    access: options.access ?? 'private',
    diskFormats: [format as DiskFormat],
  });
  try {
    const { deps } = session;
    const prepared = await prepareContent(
      image,
      { image, diskFormat: format as DiskFormat, convertFrom: undefined },
      {
        catalog: deps.catalog,
        stores: deps.stores,
        defaultStore: deps.defaultStore,
        cacheDir: deps.cacheDir,
        capabilities: driver.capabilities,
      },
    );
    const total = prepared.source.size;
    const pushed = await driver.publish(ref.tag, {
      image,
      content: prepared.source,
      timeoutMs: options.timeoutMs ?? 6 * 3_600_000,
      ...(options.onProgress ? { onProgress: (n: number) => options.onProgress!(n, total) } : {}),
    });
    return { reference: `oci://${ref.registry}/${ref.repository}:${ref.tag}`, tag: ref.tag, image: pushed };
  } finally {
    await driver.close();
  }
}
