import type { CloudImage, DriverCallOptions } from '../../core/iaas/port.js';
import { Ec2QueryClient, type Ec2Connection } from '../../core/wire/ec2/client.js';
import type { Ec2Image } from '../../core/wire/ec2/schema.js';
import { folderPrefix, objectKey, type Folder, type RepoLayout } from './mapper.js';

/**
 * Nimbus's EC2 Query frontend, asked which images the user can run (DescribeImages), through
 * the shared EC2 Query client (core/wire/ec2: SigV2, custom endpoint and API version).
 *
 * Nimbus builds that answer from the same Cumulus repository (ServiceImageImpl.convertFileListings):
 * one item per object of `VMS/<owner>/` and `VMS/common/`, `imageId` = the object name,
 * `imageLocation` = `cumulus://<host>/<bucket>/<prefix><owner|common>/`, `isPublic` for common
 * ones, state always `available`, no size or checksum. So it adds no metadata; what it tells is
 * whether the Nimbus service actually offers an image that the repository holds.
 */

export interface FrontendOptions {
  /** The Query endpoint (https://nimbus:8444/). */
  endpoint: string;
  signatureVersion: 'v2' | 'v4';
  signatureMethod: 'HmacSHA256' | 'HmacSHA1';
  /** Nimbus maps only 2009-08-15 (and falls back to it for any other). */
  apiVersion: string;
  region: string;
  /** The Cumulus credentials: Nimbus checks Query signatures against the same authz database. */
  accessKeyId: string;
  secretAccessKey: string;
  caBundle?: string;
  requestTimeoutMs: number;
}

/** One DescribeImages item in repository terms. */
export interface OfferedImage {
  name: string;
  isPublic: boolean;
  /** The repository key it stands for, when its location is in this layout. */
  key?: string;
  /** The location, when it is another bucket, prefix or owner than this adapter's. */
  elsewhere?: string;
}

export class NimbusFrontend {
  readonly #client: Ec2QueryClient;

  constructor(options: FrontendOptions) {
    const connection: Ec2Connection = {
      endpoint: options.endpoint,
      region: options.region,
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      signatureVersion: options.signatureVersion,
      signatureMethod: options.signatureMethod,
      apiVersion: options.apiVersion,
      caBundle: options.caBundle,
      requestTimeoutMs: options.requestTimeoutMs,
    };
    this.#client = new Ec2QueryClient(connection);
  }

  /**
   * Every image the frontend offers. No ImageId filter: Nimbus honours only the first one it is
   * given (apis.md §4.4), and a repository is small enough to list whole.
   */
  async offered(options: DriverCallOptions = {}): Promise<Ec2Image[]> {
    return this.#client.describeImages({}, { signal: options.signal });
  }

  close(): void {
    this.#client.close();
  }
}

const locationPattern = /^cumulus:\/\/[^/]*\/([^/]+)\/(.+?)\/?$/;

/** A DescribeImages item as a repository key of this layout (or where else it lives). */
export function offeredImage(layout: RepoLayout, bucket: string, item: Ec2Image): OfferedImage {
  const base = { name: item.id, isPublic: item.isPublic };
  const location = item.location;
  const parsed = location !== undefined ? locationPattern.exec(location) : null;
  if (!parsed) {
    // No usable location: the folder follows from isPublic, as Nimbus sets it.
    return { ...base, key: objectKey(layout, item.isPublic ? 'common' : 'own', item.id) };
  }
  const [, locationBucket, path] = parsed;
  for (const folder of ['own', 'common'] as Folder[]) {
    if (locationBucket === bucket && `${path}/` === folderPrefix(layout, folder))
      return { ...base, key: objectKey(layout, folder, item.id) };
  }
  return { ...base, elsewhere: location! };
}

export interface Reconciled {
  images: CloudImage[];
  /** Repository images the frontend does not offer (reported `disabled`). */
  notOffered: string[];
  /** Offered images of this layout that the repository listing did not show. */
  onlyOffered: string[];
  /** Offered images whose location is another repository, bucket, prefix or owner. */
  elsewhere: string[];
}

/**
 * The repository listing is what exists (with markers, sizes, checksums); the frontend says what
 * Nimbus offers. An image in both is as the repository says; one the frontend does not offer is
 * `disabled` (it exists, but Nimbus will not run it); one only the frontend shows is reported,
 * not returned (no object to read, update or delete through this repository).
 */
export function reconcile(images: readonly CloudImage[], offered: readonly OfferedImage[]): Reconciled {
  const keys = new Set(offered.flatMap((o) => (o.key !== undefined ? [o.key] : [])));
  const listed = new Set(images.map((i) => i.nativeId));
  const notOffered: string[] = [];
  const out = images.map((image) => {
    if (keys.has(image.nativeId)) return image;
    notOffered.push(image.nativeId);
    return { ...image, state: 'disabled' as const };
  });
  return {
    images: out,
    notOffered,
    onlyOffered: [...keys].filter((k) => !listed.has(k)),
    elsewhere: offered.flatMap((o) => (o.elsewhere !== undefined ? [`${o.elsewhere}${o.name}`] : [])),
  };
}
