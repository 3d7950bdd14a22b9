import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { S3Client } from '@aws-sdk/client-s3';
import { verifyRequest } from './auth.js';
import { type CheckedManifest, checkManifest, ManifestProblem, unbundle, type BundleCheck } from './clc.js';
import {
  document,
  el,
  errorDocument,
  imageItem,
  imagesSet,
  launchPermission,
  nullable,
  reservationItem,
  tagSet,
  val,
  type DoubleImage,
  type DoubleInstance,
} from './render.js';

export type { DoubleImage, DoubleInstance } from './render.js';
export type { BundleCheck } from './clc.js';

/**
 * A protocol-faithful Eucalyptus CLC (EC2 Query API, image calls) for tests, where no real
 * Eucalyptus can run. Every body it sends follows the 2010-08-31 WSDL types (or the Query
 * error envelope) and is recorded for validation; requests must carry a valid SigV4 or SigV2
 * signature for a known access key (else AuthFailure). RegisterImage behaves as
 * ImageManager.register does (apis.md §2.4): Name rules and uniqueness, the manifest read from
 * Walrus - the real S3 peer - and checked (signature with the user's certificate, key and IV
 * decrypted with the cloud's private key), paravirtual images need a kernel and ramdisk; the
 * image is `pending` while the bundle is unbundled in full with openssl and tar, then
 * `available`, or `failed` with a stateReason. Deregistered images linger as `deregistered`.
 * Tags can be switched off (InvalidAction, as on clouds without them).
 */

export interface Ec2DoubleOptions {
  /** The account of every access key that `accounts` does not place elsewhere. */
  accountId: string;
  /** Access key -> secret. */
  credentials: Record<string, string>;
  /** Access key -> account id, for keys of other accounts (each sees and changes its own images, as EC2 does). */
  accounts?: Record<string, string>;
  /** S3 client of the CLC itself (reads every bucket). */
  s3: S3Client;
  userCertificatePem: string;
  /** A file holding the cloud's private key (openssl reads it). */
  cloudKeyFile: string;
  region?: string;
  /** Path of the service; default /services/compute. */
  servicePath?: string;
  tags?: boolean;
  maxTags?: number;
  /** How long a new image stays pending before unbundling starts. */
  pendingMs?: number;
  /** How long a deregistered image is still listed. */
  deregisteredLingerMs?: number;
  /** 'full' unbundles every registered bundle; 'manifest' only checks the manifest. */
  verifyBundles?: 'full' | 'manifest';
}

export interface SentResponse {
  action: string;
  status: number;
  body: string;
}

export interface DoubleCall {
  action: string;
  params: Record<string, string>;
  signature: 'v4' | 'v2' | 'none';
}

export interface Ec2Double {
  readonly endpoint: string;
  readonly responses: readonly SentResponse[];
  readonly calls: readonly DoubleCall[];
  /** Unbundling outcome of every RegisterImage, by image id. */
  readonly bundleChecks: ReadonlyMap<string, BundleCheck>;
  images(): DoubleImage[];
  image(id: string): DoubleImage | undefined;
  /** An image made behind the adapter's back (owned by the account unless said otherwise). */
  addImage(seed: Partial<DoubleImage>): DoubleImage;
  setTags(enabled: boolean): void;
  /** The next `count` calls of `action` fail with this EC2 error. */
  failNext(action: string, code: string, status: number, count?: number): void;
  /** The next registered bundle ends `failed` with this reason, as when the NC cannot fetch it. */
  failNextBundle(reason: string): void;
  /**
   * An instance of the account launched from the image (a RunInstances behind the adapter's back):
   * listed by DescribeInstances; while it is not terminated, DeregisterImage refuses
   * (InvalidAMIID.Unavailable), as Eucalyptus does.
   */
  runInstance(imageId: string, state?: 'pending' | 'running' | 'stopped'): DoubleInstance;
  /** TerminateInstances: the instance stays listed as `terminated` for a while, as in EC2. */
  terminateInstance(instanceId: string): void;
  instances(): DoubleInstance[];
  /** Shorthand: one running instance of the image (true), or every instance of it terminated (false). */
  setInUse(id: string, inUse: boolean): void;
  /** Waits until no bundle is being unbundled. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

class Ec2Fault extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const imageIdPattern = /^[ae][mkr]i-[0-9a-f]{8,17}$/;
const namePattern = /^[A-Za-z0-9()./_-]{3,128}$/;
const prefixOf = { machine: 'emi', kernel: 'eki', ramdisk: 'eri' } as const;

/** N-indexed Query parameters: `Prefix.1.Suffix`, ... in index order. */
function indexed(params: Record<string, string>, prefix: string, suffix = ''): string[] {
  const out: Array<[number, string]> = [];
  const re = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)${suffix.replace(/\./g, '\\.')}$`);
  for (const [k, v] of Object.entries(params)) {
    const m = re.exec(k);
    if (m) out.push([Number(m[1]), v]);
  }
  return out.sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

function filtersOf(params: Record<string, string>): Array<{ name: string; values: string[] }> {
  const out: Array<{ name: string; values: string[] }> = [];
  for (let i = 1; params[`Filter.${i}.Name`] !== undefined; i++)
    out.push({ name: params[`Filter.${i}.Name`]!, values: indexed(params, `Filter.${i}.Value`) });
  return out;
}

const glob = (pattern: string, value: string) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  ).test(value);

export async function startEc2Double(options: Ec2DoubleOptions): Promise<Ec2Double> {
  const servicePath = options.servicePath ?? '/services/compute';
  const secrets = new Map(Object.entries(options.credentials));
  const images = new Map<string, DoubleImage>();
  const responses: SentResponse[] = [];
  const calls: DoubleCall[] = [];
  const bundleChecks = new Map<string, BundleCheck>();
  const failures = new Map<string, Array<{ code: string; status: number }>>();
  const instances = new Map<string, DoubleInstance>();
  const instanceStates = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 };
  const inUse = (imageId: string) =>
    [...instances.values()].some((i) => i.imageId === imageId && i.state.name !== 'terminated');
  const bundleFailures: string[] = [];
  const work = new Set<Promise<void>>();
  const timers = new Set<NodeJS.Timeout>();
  let tagsOn = options.tags ?? true;
  const maxTags = options.maxTags ?? 50;
  const accountOf = (accessKeyId: string) => options.accounts?.[accessKeyId] ?? options.accountId;

  const newId = (type: DoubleImage['type']) => {
    for (;;) {
      const id = `${prefixOf[type]}-${randomBytes(4).toString('hex')}`;
      if (!images.has(id)) return id;
    }
  };
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  /** The calls as one account makes them: `self`, ownership and visibility are that account's. */
  type Handler = (p: Record<string, string>, version: string, requestId: string) => Promise<string> | string;
  function actionsFor(account: string): Record<string, Handler> {
    const visible = (i: DoubleImage) => i.ownerId === account || i.isPublic || i.launchUsers.has(account);
    const own = (id: string): DoubleImage => {
      const image = lookup(id);
      if (image.ownerId !== account) throw new Ec2Fault('AuthFailure', `Not authorized for image:${id}`, 403);
      return image;
    };
    function lookup(id: string): DoubleImage {
      if (!imageIdPattern.test(id))
        throw new Ec2Fault('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "ami-...")`);
      const image = images.get(id);
      if (!image || !visible(image))
        throw new Ec2Fault('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
      return image;
    }

    const actions: Record<
      string,
      (p: Record<string, string>, version: string, requestId: string) => Promise<string> | string
    > = {
      DescribeImages(p, version, requestId) {
        const ids = indexed(p, 'ImageId');
        const owners = indexed(p, 'Owner');
        const executableBy = indexed(p, 'ExecutableBy');
        const filters = filtersOf(p);
        let list = ids.length > 0 ? ids.map(lookup) : [...images.values()].filter(visible);
        if (owners.length > 0)
          list = list.filter((i) =>
            owners.some((o) => (o === 'self' ? i.ownerId === account : o === i.ownerId || o === i.ownerAlias)),
          );
        if (executableBy.length > 0)
          list = list.filter((i) =>
            executableBy.some((e) =>
              e === 'all'
                ? i.isPublic
                : e === 'self' || e === account
                  ? visible(i)
                  : i.launchUsers.has(e) || i.isPublic,
            ),
          );
        for (const f of filters) {
          const field = (i: DoubleImage): Array<string | undefined> => {
            if (f.name.startsWith('tag:')) return [i.tags.get(f.name.slice(4))];
            switch (f.name) {
              case 'name':
                return [i.name];
              case 'image-id':
                return [i.id];
              case 'state':
                return [i.state];
              case 'owner-id':
                return [i.ownerId];
              case 'is-public':
                return [String(i.isPublic)];
              case 'image-type':
                return [i.type];
              case 'architecture':
                return [i.architecture];
              case 'manifest-location':
                return [i.location];
              case 'tag-key':
                return [...i.tags.keys()];
              default:
                throw new Ec2Fault('InvalidParameterValue', `The filter '${f.name}' is invalid`);
            }
          };
          list = list.filter((i) =>
            field(i).some((v) => v !== undefined && f.values.some((pattern) => glob(pattern, v))),
          );
        }
        return document('DescribeImagesResponse', version, requestId, imagesSet(list.map((i) => imageItem(i, tagsOn))));
      },

      async RegisterImage(p, version, requestId) {
        const name = p['Name'];
        if (name === undefined) throw new Ec2Fault('MissingParameter', 'The request must contain the parameter Name');
        if (!namePattern.test(name))
          throw new Ec2Fault(
            'InvalidAMIName.Malformed',
            `AMI names must be between 3 and 128 characters long, ` +
              `and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'`,
          );
        const description = p['Description'];
        if (description !== undefined && description.length > 255)
          throw new Ec2Fault('InvalidParameter', 'Description must be less than 256 characters');
        if (
          [...images.values()].some(
            (i) => i.ownerId === account && i.name === name && (i.state === 'pending' || i.state === 'available'),
          )
        ) {
          throw new Ec2Fault('InvalidAMIName.Duplicate', `AMI name ${name} is already in use by EMI`);
        }
        const location = p['ImageLocation'];
        if (location === undefined)
          throw new Ec2Fault(
            'MissingParameter',
            'Registering an image without ImageLocation needs an EBS ' +
              'root BlockDeviceMapping (not offered by this double)',
          );
        const virtualizationType = p['VirtualizationType'] ?? 'paravirtual';
        if (virtualizationType !== 'paravirtual' && virtualizationType !== 'hvm')
          throw new Ec2Fault('InvalidParameterValue', `Invalid virtualization type: ${virtualizationType}`);
        let manifest: CheckedManifest;
        try {
          manifest = await checkManifest(options.s3, location, options.userCertificatePem, options.cloudKeyFile);
        } catch (error) {
          if (error instanceof ManifestProblem) throw new Ec2Fault('InvalidManifest', error.message);
          throw error;
        }
        const type =
          manifest.type === 'kernel' || manifest.kernelId === 'true'
            ? 'kernel'
            : manifest.type === 'ramdisk' || manifest.ramdiskId === 'true'
              ? 'ramdisk'
              : 'machine';
        const kernelId = p['KernelId'] ?? (manifest.kernelId !== 'true' ? manifest.kernelId : undefined);
        const ramdiskId = p['RamdiskId'] ?? (manifest.ramdiskId !== 'true' ? manifest.ramdiskId : undefined);
        if (
          type === 'machine' &&
          virtualizationType === 'paravirtual' &&
          (kernelId === undefined || ramdiskId === undefined)
        ) {
          throw new Ec2Fault(
            'MissingParameter',
            'Paravirtual images require a kernel and a ramdisk (KernelId, RamdiskId or in the manifest)',
          );
        }
        const image: DoubleImage = {
          id: newId(type),
          location,
          state: 'pending',
          ownerId: account,
          isPublic: false,
          architecture: p['Architecture'] ?? manifest.architecture ?? 'i386',
          type,
          ...(type === 'machine' && kernelId !== undefined ? { kernelId } : {}),
          ...(type === 'machine' && ramdiskId !== undefined ? { ramdiskId } : {}),
          name,
          ...(description !== undefined ? { description } : {}),
          rootDeviceType: 'instance-store',
          rootDeviceName: '/dev/sda1',
          ...(type === 'machine' ? { virtualizationType } : {}),
          tags: new Map(),
          launchUsers: new Set(),
        };
        images.set(image.id, image);
        const job = (async () => {
          await new Promise<void>((resolve) => later(options.pendingMs ?? 50, resolve));
          const injected = bundleFailures.shift();
          const check: BundleCheck =
            injected !== undefined
              ? { ok: false, reason: injected }
              : options.verifyBundles === 'manifest'
                ? { ok: true }
                : await unbundle(options.s3, location, manifest).catch((e: unknown) => ({
                    ok: false,
                    reason: (e as Error).message,
                  }));
          bundleChecks.set(image.id, check);
          if (image.state !== 'pending') return;
          if (check.ok) image.state = 'available';
          else {
            image.state = 'failed';
            image.stateReason = {
              code: 'Client.InvalidManifest',
              message: check.reason ?? 'bundle verification failed',
            };
          }
        })();
        work.add(job);
        void job.finally(() => work.delete(job));
        return document('RegisterImageResponse', version, requestId, val('imageId', image.id));
      },

      DeregisterImage(p, version, requestId) {
        const image = own(p['ImageId'] ?? '');
        if (image.state === 'deregistered')
          throw new Ec2Fault('InvalidAMIID.NotFound', `The image id '[${image.id}]' does not exist`);
        if (inUse(image.id))
          throw new Ec2Fault(
            'InvalidAMIID.Unavailable',
            `The image ID '${image.id}' is no longer available: instances are still running`,
          );
        image.state = 'deregistered';
        later(options.deregisteredLingerMs ?? 300, () => images.delete(image.id));
        return document('DeregisterImageResponse', version, requestId, val('return', true));
      },

      /**
       * As Eucalyptus answers: the account's instances, one reservation each, filters by name
       * (unknown ones refused), no paging in the 2010-08-31 types (MaxResults is not taken).
       */
      DescribeInstances(p, version, requestId) {
        if (p['MaxResults'] !== undefined || p['NextToken'] !== undefined)
          throw new Ec2Fault('InvalidParameterValue', 'MaxResults and NextToken are not supported by this service');
        const ids = indexed(p, 'InstanceId');
        let list = [...instances.values()].filter((i) => i.ownerId === account);
        if (ids.length > 0) {
          for (const id of ids)
            if (!list.some((i) => i.id === id))
              throw new Ec2Fault('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
          list = list.filter((i) => ids.includes(i.id));
        }
        for (const f of filtersOf(p)) {
          const field = (i: DoubleInstance): string => {
            switch (f.name) {
              case 'image-id':
                return i.imageId;
              case 'instance-id':
                return i.id;
              case 'instance-state-name':
                return i.state.name;
              case 'instance-state-code':
                return String(i.state.code);
              case 'owner-id':
                return i.ownerId;
              case 'reservation-id':
                return i.reservationId;
              default:
                throw new Ec2Fault('InvalidParameterValue', `The filter '${f.name}' is invalid`);
            }
          };
          list = list.filter((i) => f.values.some((pattern) => glob(pattern, field(i))));
        }
        return document(
          'DescribeInstancesResponse',
          version,
          requestId,
          el('reservationSet', ...list.map(reservationItem)),
        );
      },

      CreateTags(p, version, requestId) {
        const resources = indexed(p, 'ResourceId');
        const keys = indexed(p, 'Tag', '.Key');
        const values = indexed(p, 'Tag', '.Value');
        if (resources.length === 0 || keys.length === 0)
          throw new Ec2Fault('MissingParameter', 'The request must contain the parameters ResourceId and Tag');
        for (const key of keys) {
          if (key.length > 127)
            throw new Ec2Fault('InvalidParameterValue', `Tag key exceeds the maximum length of 127 characters`);
          if (/^(aws|euca):/i.test(key))
            throw new Ec2Fault('InvalidParameterValue', `Tag keys starting with 'aws:' or 'euca:' are reserved`);
        }
        for (const value of values)
          if (value.length > 255)
            throw new Ec2Fault('InvalidParameterValue', 'Tag value exceeds the maximum length of 255 characters');
        const targets = resources.map(own);
        for (const image of targets) {
          const after = new Set([...image.tags.keys(), ...keys]);
          if (after.size > maxTags)
            throw new Ec2Fault(
              'TagLimitExceeded',
              `The maximum number of Tags for a resource (${maxTags}) has been reached.`,
            );
        }
        for (const image of targets) for (const [i, k] of keys.entries()) image.tags.set(k, values[i] ?? '');
        return document('CreateTagsResponse', version, requestId, val('return', true));
      },

      DeleteTags(p, version, requestId) {
        const resources = indexed(p, 'ResourceId');
        const keys = indexed(p, 'Tag', '.Key');
        for (const image of resources.map(own)) for (const k of keys) image.tags.delete(k);
        return document('DeleteTagsResponse', version, requestId, val('return', true));
      },

      DescribeTags(p, version, requestId) {
        const filters = filtersOf(p);
        const out: Array<{ resourceId: string; key: string; value: string }> = [];
        for (const image of images.values()) {
          if (image.ownerId !== account) continue;
          for (const [key, value] of image.tags) {
            const ok = filters.every((f) => {
              const v =
                f.name === 'resource-type'
                  ? 'image'
                  : f.name === 'resource-id'
                    ? image.id
                    : f.name === 'key'
                      ? key
                      : f.name === 'value'
                        ? value
                        : undefined;
              if (v === undefined) throw new Ec2Fault('InvalidParameterValue', `The filter '${f.name}' is invalid`);
              return f.values.some((pattern) => glob(pattern, v));
            });
            if (ok) out.push({ resourceId: image.id, key, value });
          }
        }
        return document('DescribeTagsResponse', version, requestId, tagSet(out));
      },

      ModifyImageAttribute(p, version, requestId) {
        const image = own(p['ImageId'] ?? '');
        const add = [
          ...indexed(p, 'LaunchPermission.Add', '.Group').map((g) => ({ group: g })),
          ...indexed(p, 'LaunchPermission.Add', '.UserId').map((u) => ({ user: u })),
        ];
        const remove = [
          ...indexed(p, 'LaunchPermission.Remove', '.Group').map((g) => ({ group: g })),
          ...indexed(p, 'LaunchPermission.Remove', '.UserId').map((u) => ({ user: u })),
        ];
        const description = p['Description.Value'];
        if (add.length === 0 && remove.length === 0 && description === undefined)
          throw new Ec2Fault('MissingParameter', 'No attribute to modify');
        for (const change of [...add, ...remove])
          if ('group' in change && change.group !== 'all')
            throw new Ec2Fault('InvalidParameterValue', `Invalid launch permission group: ${change.group}`);
        for (const change of add) {
          if ('group' in change) image.isPublic = true;
          else image.launchUsers.add(change.user);
        }
        for (const change of remove) {
          if ('group' in change) image.isPublic = false;
          else image.launchUsers.delete(change.user);
        }
        if (description !== undefined) {
          if (description.length > 255)
            throw new Ec2Fault('InvalidParameter', 'Description must be less than 256 characters');
          if (description === '') delete image.description;
          else image.description = description;
        }
        return document('ModifyImageAttributeResponse', version, requestId, val('return', true));
      },

      DescribeImageAttribute(p, version, requestId) {
        const image = lookup(p['ImageId'] ?? '');
        const attribute = p['Attribute'];
        const choice =
          attribute === 'launchPermission'
            ? launchPermission(image)
            : attribute === 'description'
              ? nullable('description', image.description)
              : attribute === 'kernel'
                ? nullable('kernel', image.kernelId)
                : attribute === 'ramdisk'
                  ? nullable('ramdisk', image.ramdiskId)
                  : undefined;
        if (choice === undefined)
          throw new Ec2Fault('InvalidParameterValue', `Value (${attribute ?? ''}) for parameter attribute is invalid`);
        return document('DescribeImageAttributeResponse', version, requestId, val('imageId', image.id), choice);
      },
    };
    return actions;
  }
  const tagActions = new Set(['CreateTags', 'DeleteTags', 'DescribeTags']);

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => void handle(req, res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://double');
    const requestId = randomUUID();
    const pairs: Array<[string, string]> = [...url.searchParams];
    if ((req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded'))
      pairs.push(...new URLSearchParams(body.toString('utf8')));
    const params = Object.fromEntries(pairs);
    const action = params['Action'] ?? '';
    const send = (status: number, xml: string) => {
      responses.push({ action, status, body: xml });
      res.writeHead(status, { 'Content-Type': 'text/xml;charset=UTF-8', 'Content-Length': Buffer.byteLength(xml) });
      res.end(xml);
    };
    try {
      if (url.pathname.replace(/\/$/, '') !== servicePath)
        throw new Ec2Fault('InvalidAction', `No service at ${url.pathname}`, 404);
      const auth = verifyRequest({
        method: req.method ?? 'GET',
        path: (req.url ?? '/').split('?')[0]!,
        query: url.search.slice(1),
        headers: req.headers,
        body,
        params: pairs,
        secrets,
        service: 'ec2',
        ...(options.region !== undefined ? { region: options.region } : {}),
      });
      calls.push({
        action,
        params: Object.fromEntries(pairs.filter(([k]) => !['Signature', 'AWSAccessKeyId'].includes(k))),
        signature: auth.ok ? auth.version : 'none',
      });
      if (!auth.ok) throw new Ec2Fault(auth.code, auth.message, 401);
      const version = params['Version'];
      if (!version) throw new Ec2Fault('MissingParameter', 'The request must contain the parameter Version');
      const injected = failures.get(action)?.shift();
      if (injected) throw new Ec2Fault(injected.code, `injected ${injected.code}`, injected.status);
      if (tagActions.has(action) && !tagsOn)
        throw new Ec2Fault('InvalidAction', `The action ${action} is not valid for this web service.`);
      const handler = actionsFor(accountOf(auth.accessKeyId))[action];
      if (!handler) throw new Ec2Fault('InvalidAction', `The action ${action} is not valid for this web service.`);
      send(200, await handler(params, version, requestId));
    } catch (error) {
      if (error instanceof Ec2Fault) send(error.status, errorDocument(error.code, error.message, requestId));
      else send(500, errorDocument('InternalError', (error as Error).message, requestId));
    }
  }

  function runInstance(imageId: string, state: 'pending' | 'running' | 'stopped' = 'running'): DoubleInstance {
    const image = images.get(imageId);
    if (!image) throw new Error(`ec2 double: no image ${imageId} to run`);
    const hex = () => randomBytes(4).toString('hex');
    const n = instances.size + 1;
    const instance: DoubleInstance = {
      id: `i-${hex()}`,
      reservationId: `r-${hex()}`,
      ownerId: options.accountId,
      imageId,
      state: { code: instanceStates[state], name: state },
      privateDnsName: `euca-10-1-0-${n}.eucalyptus.internal`,
      dnsName: state === 'running' ? `euca-192-0-2-${n}.eucalyptus.example` : '',
      reason: '',
      keyName: 'visor-test',
      amiLaunchIndex: 0,
      instanceType: 'm1.small',
      launchTime: new Date().toISOString(),
      availabilityZone: 'cluster01',
      ...(image.kernelId !== undefined ? { kernelId: image.kernelId } : {}),
      ...(image.ramdiskId !== undefined ? { ramdiskId: image.ramdiskId } : {}),
      privateIpAddress: `10.1.0.${n}`,
      ...(state === 'running' ? { ipAddress: `192.0.2.${n}` } : {}),
      ...(image.architecture !== undefined ? { architecture: image.architecture } : {}),
      rootDeviceType: 'instance-store',
      rootDeviceName: '/dev/sda1',
      ...(image.virtualizationType !== undefined ? { virtualizationType: image.virtualizationType } : {}),
    };
    instances.set(instance.id, instance);
    return instance;
  }
  function terminateInstance(instanceId: string): void {
    const instance = instances.get(instanceId);
    if (!instance) throw new Error(`ec2 double: no instance ${instanceId}`);
    instance.state = { code: instanceStates.terminated, name: 'terminated' };
    instance.reason = `User initiated (${new Date().toISOString().slice(0, 19).replace('T', ' ')} GMT)`;
    instance.stateReason = {
      code: 'Client.UserInitiatedShutdown',
      message: 'Client.UserInitiatedShutdown: User initiated shutdown',
    };
    instance.dnsName = '';
    delete instance.ipAddress;
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    endpoint: `http://127.0.0.1:${port}${servicePath}`,
    responses,
    calls,
    bundleChecks,
    images: () => [...images.values()],
    image: (id) => images.get(id),
    addImage(seed) {
      const type = seed.type ?? 'machine';
      const image: DoubleImage = {
        id: seed.id ?? newId(type),
        state: 'available',
        ownerId: options.accountId,
        isPublic: false,
        architecture: 'x86_64',
        type,
        rootDeviceType: 'instance-store',
        // A seed that names its root device type brings its own root device (or none).
        ...(seed.rootDeviceType === undefined ? { rootDeviceName: '/dev/sda1' } : {}),
        ...(type === 'machine' && seed.rootDeviceType === undefined ? { virtualizationType: 'hvm' } : {}),
        ...seed,
        tags: seed.tags ?? new Map(),
        launchUsers: seed.launchUsers ?? new Set(),
      };
      images.set(image.id, image);
      return image;
    },
    setTags: (enabled) => {
      tagsOn = enabled;
    },
    failNext(action, code, status, count = 1) {
      const list = failures.get(action) ?? [];
      for (let i = 0; i < count; i++) list.push({ code, status });
      failures.set(action, list);
    },
    failNextBundle(reason) {
      bundleFailures.push(reason);
    },
    runInstance,
    terminateInstance,
    instances: () => [...instances.values()],
    setInUse(id, value) {
      if (value) runInstance(id);
      else
        for (const i of instances.values())
          if (i.imageId === id && i.state.name !== 'terminated') terminateInstance(i.id);
    },
    idle: async () => {
      while (work.size > 0) await Promise.allSettled([...work]);
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      await Promise.allSettled([...work]);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
