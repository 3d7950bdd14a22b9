import { isVisorError, VisorError } from '../../core/errors.js';
import type { Markers } from '../../core/iaas/port.js';
import type { Image } from '../../core/image/model.js';
import type { Logger } from '../../core/logging/logger.js';
import {
  ec2ErrorCode,
  unsupportedActionCodes,
  type Ec2CallOptions,
  type Ec2QueryClient,
} from '../../core/wire/ec2/client.js';
import { descriptionOf, hiddenTagKey, tagChanges, tagsOf, type Registration } from './mapper.js';
import type { Ec2Image, Ec2Instance } from '../../core/wire/ec2/schema.js';

/**
 * The adapter's EC2 side: what the driver asks of the cloud, in its terms. It decides where
 * markers go (tags, or the Description where the cloud has no tags: detected once by the error
 * code of a DescribeTags probe), lists only the account's own images, hides deregistered ones,
 * and turns a duplicate-name RegisterImage of the very same bundle into the image that exists.
 */

/** Filter values per DescribeInstances call (AWS takes up to 200 values in one filter). */
const imageIdsPerCall = 100;

/** The cloud has no DescribeInstances, or these credentials may not call it. */
function cannotListInstances(error: unknown): boolean {
  if (!isVisorError(error)) return false;
  const code = error.details?.['code'];
  if (typeof code === 'string' && unsupportedActionCodes.has(code)) return true;
  return error.kind === 'unsupported' || error.kind === 'forbidden';
}

export interface EucalyptusClientOptions {
  ec2: Ec2QueryClient;
  /** The account's id: the Owner filter of every listing. */
  accountId: string;
  /** true / false, or 'auto': probe once with DescribeTags. */
  tagsSupported: boolean | 'auto';
  /** Most tags the cloud keeps on one resource (AWS 50; old Eucalyptus and AWS before 2016: 10). */
  maxTags: number;
  /** MaxResults for DescribeImages and DescribeInstances (AWS only; Eucalyptus has no paging). */
  pageSize?: number | undefined;
  /**
   * Whether to ask DescribeInstances which images instances use (default true). A cloud without
   * the call, or credentials refused it, turn it off at the first answer (with a warning).
   */
  detectInUse?: boolean | undefined;
  logger: Logger;
}

export class EucalyptusClient {
  readonly #o: EucalyptusClientOptions;
  #tags: boolean | undefined;
  #probe: Promise<boolean> | undefined;
  #instances: boolean | undefined;

  constructor(options: EucalyptusClientOptions) {
    this.#o = options;
    this.#tags = typeof options.tagsSupported === 'boolean' ? options.tagsSupported : undefined;
    this.#instances = options.detectInUse === false ? false : undefined;
  }

  /** Whether instances can be listed: false once the cloud refused DescribeInstances; undefined until asked. */
  get instancesKnown(): boolean | undefined {
    return this.#instances;
  }

  /**
   * Image id -> ids of the instances that use it (every state but `terminated`: a stopped instance
   * can start again from it), asked with DescribeInstances and an `image-id` filter, a bounded
   * number of ids per call. undefined when the cloud cannot tell: no such call (InvalidAction) or
   * not allowed to these credentials; then the cloud's own refusal is the only guard. Any other
   * failure is thrown: "not in use" is never assumed from a failed call.
   */
  async instancesUsing(
    imageIds: readonly string[],
    options: Ec2CallOptions = {},
  ): Promise<Map<string, string[]> | undefined> {
    if (this.#instances === false) return undefined;
    const using = new Map<string, string[]>();
    const paging = this.#o.pageSize !== undefined ? { pageSize: this.#o.pageSize } : {};
    const wanted = new Set(imageIds);
    for (let start = 0; start < imageIds.length; start += imageIdsPerCall) {
      const chunk = imageIds.slice(start, start + imageIdsPerCall);
      let found: Ec2Instance[];
      try {
        found = await this.#o.ec2.describeInstances(
          { filters: [{ name: 'image-id', values: chunk }], ...paging },
          options,
        );
      } catch (error) {
        if (!cannotListInstances(error)) throw error;
        this.#instances = false;
        this.#o.logger.warn(
          "eucalyptus: DescribeInstances is refused here; images in use cannot be seen (the cloud's own refusal " +
            'to deregister is the only guard)',
          { code: isVisorError(error) ? error.details?.['code'] : undefined },
        );
        return undefined;
      }
      for (const instance of found) {
        // The filter is the cloud's; an instance of another image (a cloud ignoring filters) is not counted.
        if (instance.imageId === undefined || !wanted.has(instance.imageId) || instance.state === 'terminated')
          continue;
        const list = using.get(instance.imageId) ?? [];
        list.push(instance.id);
        using.set(instance.imageId, list);
      }
    }
    this.#instances = true;
    return using;
  }

  /** Whether tags are known to work; undefined until the first call has found out ('auto'). */
  get tagsKnown(): boolean | undefined {
    return this.#tags;
  }

  /** Probes once (DescribeTags for the visor:agent key); an "unknown action" error means no tags. */
  async tagsSupported(options: Ec2CallOptions = {}): Promise<boolean> {
    if (this.#tags !== undefined) return this.#tags;
    this.#probe ??= this.#o.ec2
      .describeTags(
        [
          { name: 'resource-type', values: ['image'] },
          { name: 'key', values: ['visor:agent'] },
        ],
        options,
      )
      .then(
        () => true,
        (error: unknown) => {
          const code = isVisorError(error) ? error.details?.['code'] : ec2ErrorCode(error);
          if (typeof code === 'string' && unsupportedActionCodes.has(code)) return false;
          throw error;
        },
      )
      .then(
        (supported) => {
          this.#tags = supported;
          if (!supported) this.#o.logger.warn('eucalyptus: this cloud has no tags; markers go into image descriptions');
          return supported;
        },
        (error: unknown) => {
          this.#probe = undefined;
          throw error;
        },
      );
    return this.#probe;
  }

  /**
   * The account's own images (Owner=self: the credentials' account, whatever accountId says),
   * deregistered ones left out (they linger for a while after deregistration).
   */
  async images(options: Ec2CallOptions = {}): Promise<Ec2Image[]> {
    const paging = this.#o.pageSize !== undefined ? { pageSize: this.#o.pageSize } : {};
    const images = await this.#o.ec2.describeImages({ owners: ['self'], ...paging }, options);
    return images.filter((i) => i.state !== 'deregistered');
  }

  /** One image; `notFound` when it is unknown, malformed as an id, or deregistered. */
  async image(imageId: string, options: Ec2CallOptions = {}): Promise<Ec2Image> {
    const image = await this.#o.ec2.describeImage(imageId, options);
    if (image.state === 'deregistered')
      throw new VisorError('notFound', `eucalyptus: image ${imageId} is deregistered`, { details: { imageId } });
    return image;
  }

  /**
   * RegisterImage. When EC2 says the name is taken by an image of this account made from the
   * very same manifest (a create retried after its answer was lost), that image is the result.
   */
  async register(
    registration: Registration,
    imageLocation: string,
    options: Ec2CallOptions = {},
  ): Promise<{ imageId: string; adopted: boolean }> {
    try {
      const imageId = await this.#o.ec2.registerImage(
        {
          Name: registration.ec2Name,
          ImageLocation: imageLocation,
          Architecture: registration.architecture as never,
          ...(registration.description !== undefined ? { Description: registration.description } : {}),
          ...(registration.kernelId !== undefined ? { KernelId: registration.kernelId } : {}),
          ...(registration.ramdiskId !== undefined ? { RamdiskId: registration.ramdiskId } : {}),
          ...(registration.virtualizationType !== undefined
            ? { VirtualizationType: registration.virtualizationType }
            : {}),
        },
        options,
      );
      return { imageId, adopted: false };
    } catch (error) {
      if (!isVisorError(error) || error.details?.['code'] !== 'InvalidAMIName.Duplicate') throw error;
      const named = { owners: ['self'], filters: [{ name: 'name', values: [registration.ec2Name] }] };
      const same = (await this.#o.ec2.describeImages(named, options)).find(
        (i) => i.name === registration.ec2Name && i.location === imageLocation && i.state !== 'deregistered',
      );
      if (!same) throw error;
      this.#o.logger.info('eucalyptus: the bundle was already registered; that image is taken', {
        imageId: same.id,
        location: imageLocation,
      });
      return { imageId: same.id, adopted: true };
    }
  }

  async deregister(imageId: string, options: Ec2CallOptions = {}): Promise<void> {
    try {
      await this.#o.ec2.deregisterImage(imageId, options);
    } catch (error) {
      if (isVisorError(error) && error.details?.['code'] === 'InvalidAMIID.Unavailable') {
        throw new VisorError(
          'conflict',
          `eucalyptus: image ${imageId} cannot be deregistered: instances still use it`,
          { cause: error, details: { imageId } },
        );
      }
      throw error;
    }
  }

  /** Refuses (invalidInput) metadata the cloud could not store, before anything is created. */
  checkMetadata(image: Image, markers: Markers, tags: boolean): void {
    if (!tags) {
      descriptionOf(image, markers, false, false);
      return;
    }
    const count = Object.keys(tagsOf(image, markers, new Date(0).toISOString())).length;
    if (count > this.#o.maxTags) {
      throw new VisorError(
        'invalidInput',
        `eucalyptus: image ${image.id} needs ${count} tags, the cloud keeps at ` +
          `most ${this.#o.maxTags} (fewer custom properties, or raise maxTags)`,
      );
    }
  }

  /**
   * Writes markers and generic metadata: the adapter's tags (changed ones set, stale ones
   * removed), the Description, and nothing else. `hiddenAt` keeps or sets the hidden stamp.
   */
  async writeMetadata(
    current: Ec2Image,
    image: Image,
    markers: Markers,
    hiddenAt: string | undefined,
    options: Ec2CallOptions = {},
  ): Promise<void> {
    const tags = await this.tagsSupported(options);
    const description = descriptionOf(image, markers, tags, hiddenAt !== undefined) ?? '';
    if (tags) {
      const desired = tagsOf(image, markers, hiddenAt);
      if (Object.keys(desired).length > this.#o.maxTags) {
        throw new VisorError(
          'invalidInput',
          `eucalyptus: image ${image.id} needs ${Object.keys(desired).length} tags, ` +
            `the cloud keeps at most ${this.#o.maxTags} (fewer custom properties, or raise maxTags)`,
        );
      }
      const { set, remove } = tagChanges(current.tags, desired);
      await this.#o.ec2.deleteTags([current.id], remove, options);
      await this.#o.ec2.createTags([current.id], set, options);
    }
    if ((current.description ?? '') !== description)
      await this.#o.ec2.modifyDescription(current.id, description, options);
  }

  /**
   * Public = launch permission for group `all`; private = not for group `all`. Launch permissions
   * of chosen accounts are the sharing's (`launchUsers`), left as they are here.
   */
  async setAccess(image: Ec2Image, access: 'public' | 'private', options: Ec2CallOptions = {}): Promise<void> {
    if (access === 'public') {
      if (!image.isPublic) await this.#o.ec2.modifyLaunchPermission(image.id, { add: [{ group: 'all' }] }, options);
      return;
    }
    if (image.isPublic) await this.#o.ec2.modifyLaunchPermission(image.id, { remove: [{ group: 'all' }] }, options);
  }

  /** Hiding: no launch permission at all (group `all` and every account), so that only the owner can launch it. */
  async revokeAll(image: Ec2Image, options: Ec2CallOptions = {}): Promise<void> {
    const granted = await this.#o.ec2.describeLaunchPermissions(image.id, options);
    const remove =
      image.isPublic && !granted.some((p) => 'group' in p) ? [...granted, { group: 'all' as const }] : granted;
    await this.#o.ec2.modifyLaunchPermission(image.id, { remove }, options);
  }

  /** The accounts (user ids) with a launch permission for the image. */
  async launchUsers(imageId: string, options: Ec2CallOptions = {}): Promise<string[]> {
    const granted = await this.#o.ec2.describeLaunchPermissions(imageId, options);
    return granted.flatMap((p) => ('userId' in p ? [p.userId] : [])).sort();
  }

  /** ModifyImageAttribute LaunchPermission.Add.N.UserId / Remove.N.UserId, in one call. */
  async changeLaunchUsers(
    imageId: string,
    add: readonly string[],
    remove: readonly string[],
    options: Ec2CallOptions = {},
  ) {
    const users = (ids: readonly string[]) => ids.map((userId) => ({ userId }));
    await this.#o.ec2.modifyLaunchPermission(imageId, { add: users(add), remove: users(remove) }, options);
  }

  /** The hidden stamp an image carries, if any. */
  static hiddenAt(image: Ec2Image): string | undefined {
    return image.tags[hiddenTagKey];
  }

  close(): void {
    this.#o.ec2.close();
  }
}
