import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import {
  CreateTagsCommand,
  DeleteTagsCommand,
  DeregisterImageCommand,
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeTagsCommand,
  EC2Client,
  type EC2ClientConfig,
  ModifyImageAttributeCommand,
  RegisterImageCommand,
  type Filter,
  type LaunchPermission,
  type RegisterImageCommandInput,
} from '@aws-sdk/client-ec2';
import { VisorError, type ErrorKind } from '../../errors.js';
import { sdkError } from '../errors.js';
import {
  describeImagesOutput,
  describeInstancesOutput,
  describeTagsOutput,
  launchPermissionsOutput,
  parseEc2,
  parseEc2Image,
  registerImageOutput,
  type Ec2Image,
  type Ec2Instance,
} from './schema.js';
import { signQueryRequest, type SignableRequest, type SignatureMethod } from './sigv2.js';

/**
 * The EC2 Query API side, for any EC2-compatible cloud: AWS, Eucalyptus (`/services/compute`,
 * or `/services/Eucalyptus` on old ones) and Nimbus's Query frontend (DescribeImages only).
 * @aws-sdk/client-ec2 does the wire work; this file adds Signature V2 for clouds that need it,
 * validates every output (schema.ts) and turns every failure into a VisorError.
 *
 * Shared wire code: the Eucalyptus adapter registers images through it, the Nimbus adapter asks
 * its EC2 frontend which images it offers:
 *
 *   const ec2 = new Ec2QueryClient({ endpoint: 'https://nimbus:8444', region: 'nimbus',
 *     accessKeyId, secretAccessKey, signatureVersion: 'v2' });
 *   const images = await ec2.describeImages({ owners: ['self'] });
 *   ec2.close();
 */

export interface Ec2Connection {
  /** The Query endpoint, path included (http://clc:8773/services/compute); omit for AWS. */
  endpoint?: string | undefined;
  /** Signing region (SigV4); any name the cloud accepts, e.g. "eucalyptus". */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
  /** 'v4' (default): what AWS and Eucalyptus ≥ 4 take; 'v2': old Eucalyptus, Nimbus. */
  signatureVersion?: 'v4' | 'v2' | undefined;
  /** SigV2 only; HmacSHA256 unless the cloud takes only SHA1. */
  signatureMethod?: SignatureMethod | undefined;
  /** The API Version parameter to send instead of the SDK's (2016-11-15), e.g. 2010-08-31. */
  apiVersion?: string | undefined;
  /** PEM of extra CAs to trust for an https endpoint (Nimbus's self-signed 8444). */
  caBundle?: string | undefined;
  /** Longest a request may stay silent (default 60 s); connecting gets 10 s. */
  requestTimeoutMs?: number | undefined;
  /** Attempts per request, retries of throttling and 5xx included (SDK default 3). */
  maxAttempts?: number | undefined;
}

export interface DescribeImagesQuery {
  imageIds?: readonly string[];
  /** Owner.N: account ids, `self`, `amazon`... */
  owners?: readonly string[];
  /** ExecutableBy.N: `self`, `all` or account ids. */
  executableBy?: readonly string[];
  filters?: ReadonlyArray<{ name: string; values: readonly string[] }>;
  /** MaxResults per page (AWS: 5-1000). Leave unset for Eucalyptus, whose binding has no paging. */
  pageSize?: number;
}

export interface DescribeInstancesQuery {
  filters?: ReadonlyArray<{ name: string; values: readonly string[] }>;
  /**
   * MaxResults per page (AWS: 5-1000; API versions from 2013 on). Leave unset for Eucalyptus, whose
   * 2010-08-31 types have no paging: the whole result comes in one response.
   */
  pageSize?: number;
}

export interface Ec2CallOptions {
  signal?: AbortSignal | undefined;
}

export type Ec2LaunchPermission = { group: 'all' } | { userId: string };

const connectionTimeoutMs = 10_000;

/** An EC2Client for `connection`, SigV4 by the SDK or SigV2 by `sigv2.ts`. */
export function createEc2Client(connection: Ec2Connection): EC2Client {
  const credentials = {
    accessKeyId: connection.accessKeyId,
    secretAccessKey: connection.secretAccessKey,
    ...(connection.sessionToken !== undefined ? { sessionToken: connection.sessionToken } : {}),
  };
  const v2 = connection.signatureVersion === 'v2';
  const client = new EC2Client({
    ...(connection.endpoint !== undefined ? { endpoint: connection.endpoint } : {}),
    region: connection.region,
    credentials,
    ...(connection.maxAttempts !== undefined ? { maxAttempts: connection.maxAttempts } : {}),
    requestHandler: {
      connectionTimeout: connectionTimeoutMs,
      requestTimeout: connection.requestTimeoutMs ?? 60_000,
      ...(connection.caBundle !== undefined
        ? { httpsAgent: new HttpsAgent({ keepAlive: true, ca: [...rootCertificates, connection.caBundle] }) }
        : {}),
    },
    ...(v2
      ? {
          // The EC2 auth scheme provider asks for aws.auth#sigv4; answering it with a V2 signer keeps
          // the SDK's retries, serialisation and parsing and changes only the signature.
          httpAuthSchemes: [
            {
              schemeId: 'aws.auth#sigv4',
              identityProvider: () => async () => credentials,
              signer: {
                sign: async (request: SignableRequest) =>
                  signQueryRequest(request, {
                    accessKeyId: connection.accessKeyId,
                    secretAccessKey: connection.secretAccessKey,
                    signatureMethod: connection.signatureMethod ?? 'HmacSHA256',
                  }),
              },
            },
          ],
        }
      : {}),
  } as unknown as EC2ClientConfig);
  client.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const response = result.response as { body?: unknown; statusCode?: number };
      if (response.body instanceof Readable)
        response.body = Readable.from([
          await boundedXml(response.body, (response.statusCode ?? 200) >= 200 && (response.statusCode ?? 200) < 300),
        ]);
      return result;
    },
    // Innermost (after the deserializer in the stack, so it sees the raw body first).
    { step: 'deserialize', name: 'visorBoundedResponse', priority: 'low' },
  );
  if (connection.apiVersion !== undefined) {
    const version = connection.apiVersion;
    // Before signing (build step), so that both signatures cover the Version actually sent.
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body?: unknown; headers?: Record<string, string> };
        if (typeof request.body === 'string') {
          const params = new URLSearchParams(request.body);
          params.set('Version', version);
          const body = params.toString();
          request.body = body;
          if (request.headers) request.headers['content-length'] = String(Buffer.byteLength(body));
        }
        return next(args);
      },
      { step: 'build', name: 'visorEc2ApiVersion', priority: 'low' },
    );
  }
  return client;
}

/**
 * An EC2 success reply's root element: <DescribeImagesResponse xmlns=...> (after an optional declaration and comments).
 */
const successRoot = /^\uFEFF?\s*(<\?xml[^>]*\?>\s*)?(<!--[\s\S]*?-->\s*)*<([A-Za-z_][\w.-]*:)?[A-Za-z]+Response[\s/>]/;

/** Far above any real reply (a DescribeImages of thousands of images is a few MiB). */
const maxResponseBytes = 64 * 1024 * 1024;

/**
 * Reads a reply whole before the SDK parses it, refusing one larger than maxResponseBytes (the
 * SDK would buffer any size) and one declaring entities (EC2 never does; they are an expansion
 * or external-entity attack), and a success whose document is no EC2 reply. A proxy's
 * `<!DOCTYPE html>` error page still maps by its status.
 */
async function boundedXml(body: Readable, success: boolean): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > maxResponseBytes) {
      body.destroy();
      throw new VisorError(
        'invalidResponse',
        `ec2: the response is larger than ${maxResponseBytes} bytes; refusing to read it`,
      );
    }
    chunks.push(chunk as Buffer);
  }
  const data = Buffer.concat(chunks);
  const text = data.toString('latin1');
  if (/<!ENTITY/i.test(text))
    throw new VisorError('invalidResponse', 'ec2: the response declares DTD entities (never part of an EC2 reply)');
  // The SDK reads any other document (an HTML page, a proxy's answer) as an empty result: a cloud with no images.
  if (success && !successRoot.test(text))
    throw new VisorError(
      'invalidResponse',
      `ec2: the response is not an EC2 reply (it starts ${JSON.stringify(text.trimStart().slice(0, 60))})`,
    );
  return data;
}

/** EC2 error codes (AWS's API reference "Error codes"; Eucalyptus ImageManager.java; apis.md §2.8). */
const kindByCode: Record<string, ErrorKind> = {
  AuthFailure: 'auth',
  SignatureDoesNotMatch: 'auth',
  InvalidClientTokenId: 'auth',
  MissingClientTokenId: 'auth',
  MissingAuthenticationToken: 'auth',
  IncompleteSignature: 'auth',
  RequestExpired: 'auth',
  ExpiredToken: 'auth',
  InvalidSecurity: 'auth',
  UnauthorizedOperation: 'forbidden',
  AccessDenied: 'forbidden',
  OptInRequired: 'forbidden',
  Blocked: 'forbidden',
  'InvalidAMIID.NotFound': 'notFound',
  'InvalidAMIID.Malformed': 'notFound',
  'InvalidAMIID.Unavailable': 'conflict',
  'InvalidAMIName.Duplicate': 'conflict',
  'InvalidAMIName.Malformed': 'invalidInput',
  InvalidManifest: 'invalidInput',
  InvalidParameterValue: 'invalidInput',
  InvalidParameter: 'invalidInput',
  InvalidParameterCombination: 'invalidInput',
  MissingParameter: 'invalidInput',
  UnknownParameter: 'invalidInput',
  InvalidFilter: 'invalidInput',
  InvalidID: 'notFound',
  TagLimitExceeded: 'invalidInput',
  ResourceLimitExceeded: 'invalidInput',
  AMIQuotaExceeded: 'invalidInput',
  InvalidAction: 'unsupported',
  UnsupportedOperation: 'unsupported',
  UnknownOperation: 'unsupported',
  NotImplemented: 'unsupported',
  RequestLimitExceeded: 'unavailable',
  Throttling: 'unavailable',
  ThrottlingException: 'unavailable',
  ServiceUnavailable: 'unavailable',
  Unavailable: 'unavailable',
  InternalError: 'unavailable',
  InternalFailure: 'unavailable',
  RequestTimeout: 'timeout',
  TimeoutError: 'timeout',
  RequestTimeoutException: 'timeout',
};

/** Codes that mean "this cloud has no such call" (old Eucalyptus, Nimbus): features fall back. */
export const unsupportedActionCodes: ReadonlySet<string> = new Set([
  'InvalidAction',
  'UnsupportedOperation',
  'UnknownOperation',
  'NotImplemented',
]);

/** The EC2 error code of an SDK error, when it carries one. */
export function ec2ErrorCode(error: unknown): string | undefined {
  type Shape = { Code?: unknown; name?: unknown; $metadata?: { httpStatusCode?: unknown } };
  const e = (typeof error === 'object' && error !== null ? error : {}) as Shape;
  if (typeof e.Code === 'string') return e.Code;
  if (typeof e.$metadata?.httpStatusCode === 'number' && typeof e.name === 'string') return e.name;
  return undefined;
}

/**
 * An SDK error as a VisorError whose kind callers act on. `context` says what was being done
 * ("ec2: DescribeImages"); see `sdkError`.
 */
export function ec2Error(error: unknown, context: string): VisorError {
  return sdkError(error, context, {
    codes: kindByCode,
    codeOf: ec2ErrorCode,
    fallback: (code) => {
      if (code.endsWith('.NotFound')) return 'notFound';
      return code.endsWith('.Malformed') ? 'invalidInput' : undefined;
    },
    tlsHint: "give the endpoint's CA in caBundle",
  });
}

/** Upper bound on DescribeImages and DescribeInstances pages: a cloud that keeps answering with tokens is broken. */
const maxPages = 10_000;

const filtersOf = (filters: DescribeImagesQuery['filters']): Filter[] | undefined =>
  filters && filters.length > 0 ? filters.map((f) => ({ Name: f.name, Values: [...f.values] })) : undefined;

/**
 * The image calls of the EC2 Query API, each output validated, each failure a VisorError.
 * `close()` releases the connection pool and is safe to call twice.
 */
export class Ec2QueryClient {
  readonly #client: EC2Client;
  #closed = false;

  constructor(connection: Ec2Connection) {
    this.#client = createEc2Client(connection);
  }

  /** Every image matching `query`, following NextToken (AWS) until the last page. */
  async describeImages(query: DescribeImagesQuery = {}, options: Ec2CallOptions = {}): Promise<Ec2Image[]> {
    const images: Ec2Image[] = [];
    const seenTokens = new Set<string>();
    let token: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const output = await this.#send(
        'DescribeImages',
        new DescribeImagesCommand({
          ...(query.imageIds && query.imageIds.length > 0 ? { ImageIds: [...query.imageIds] } : {}),
          ...(query.owners && query.owners.length > 0 ? { Owners: [...query.owners] } : {}),
          ...(query.executableBy && query.executableBy.length > 0 ? { ExecutableUsers: [...query.executableBy] } : {}),
          ...(filtersOf(query.filters) ? { Filters: filtersOf(query.filters) } : {}),
          // AWS refuses MaxResults together with ImageIds.
          ...(query.pageSize !== undefined && !(query.imageIds && query.imageIds.length > 0)
            ? { MaxResults: query.pageSize }
            : {}),
          ...(token !== undefined ? { NextToken: token } : {}),
        }),
        options,
      );
      const parsed = parseEc2(describeImagesOutput, output, 'the DescribeImages response');
      for (const item of parsed.Images ?? []) images.push(parseEc2Image(item, images.length));
      token = parsed.NextToken;
      if (token === undefined) return images;
      if (seenTokens.has(token))
        throw new VisorError('invalidResponse', 'ec2: DescribeImages returned the same NextToken twice');
      seenTokens.add(token);
    }
    throw new VisorError('invalidResponse', `ec2: DescribeImages still had more pages after ${maxPages}`);
  }

  /** Every instance matching `query` (reservations flattened), following NextToken where the cloud pages. */
  async describeInstances(query: DescribeInstancesQuery = {}, options: Ec2CallOptions = {}): Promise<Ec2Instance[]> {
    const instances: Ec2Instance[] = [];
    const seenTokens = new Set<string>();
    let token: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const output = await this.#send(
        'DescribeInstances',
        new DescribeInstancesCommand({
          ...(filtersOf(query.filters) ? { Filters: filtersOf(query.filters) } : {}),
          ...(query.pageSize !== undefined ? { MaxResults: query.pageSize } : {}),
          ...(token !== undefined ? { NextToken: token } : {}),
        }),
        options,
      );
      const parsed = parseEc2(describeInstancesOutput, output, 'the DescribeInstances response');
      for (const reservation of parsed.Reservations ?? []) instances.push(...reservation.Instances);
      token = parsed.NextToken;
      if (token === undefined) return instances;
      if (seenTokens.has(token))
        throw new VisorError('invalidResponse', 'ec2: DescribeInstances returned the same NextToken twice');
      seenTokens.add(token);
    }
    throw new VisorError('invalidResponse', `ec2: DescribeInstances still had more pages after ${maxPages}`);
  }

  /** One image by id; `notFound` when the cloud does not show it. */
  async describeImage(imageId: string, options: Ec2CallOptions = {}): Promise<Ec2Image> {
    const [image] = await this.describeImages({ imageIds: [imageId] }, options);
    if (!image || image.id !== imageId)
      throw new VisorError('notFound', `ec2: no image ${imageId}`, { details: { imageId } });
    return image;
  }

  async registerImage(
    input: RegisterImageCommandInput & { Name: string },
    options: Ec2CallOptions = {},
  ): Promise<string> {
    const output = await this.#send('RegisterImage', new RegisterImageCommand(input), options);
    return parseEc2(registerImageOutput, output, 'the RegisterImage response').ImageId;
  }

  async deregisterImage(imageId: string, options: Ec2CallOptions = {}): Promise<void> {
    await this.#send('DeregisterImage', new DeregisterImageCommand({ ImageId: imageId }), options);
  }

  async createTags(
    resourceIds: readonly string[],
    tags: Readonly<Record<string, string>>,
    options: Ec2CallOptions = {},
  ): Promise<void> {
    const entries = Object.entries(tags);
    if (entries.length === 0) return;
    await this.#send(
      'CreateTags',
      new CreateTagsCommand({ Resources: [...resourceIds], Tags: entries.map(([Key, Value]) => ({ Key, Value })) }),
      options,
    );
  }

  async deleteTags(
    resourceIds: readonly string[],
    keys: readonly string[],
    options: Ec2CallOptions = {},
  ): Promise<void> {
    if (keys.length === 0) return;
    await this.#send(
      'DeleteTags',
      new DeleteTagsCommand({ Resources: [...resourceIds], Tags: keys.map((Key) => ({ Key })) }),
      options,
    );
  }

  async describeTags(
    filters: ReadonlyArray<{ name: string; values: readonly string[] }>,
    options: Ec2CallOptions = {},
  ): Promise<Array<{ resourceId: string; key: string; value: string }>> {
    const out: Array<{ resourceId: string; key: string; value: string }> = [];
    let token: string | undefined;
    const seen = new Set<string>();
    do {
      const output = await this.#send(
        'DescribeTags',
        new DescribeTagsCommand({
          ...(filtersOf(filters) ? { Filters: filtersOf(filters) } : {}),
          ...(token ? { NextToken: token } : {}),
        }),
        options,
      );
      const parsed = parseEc2(describeTagsOutput, output, 'the DescribeTags response');
      for (const t of parsed.Tags ?? []) out.push({ resourceId: t.ResourceId, key: t.Key, value: t.Value ?? '' });
      token = parsed.NextToken;
      if (token !== undefined && seen.has(token))
        throw new VisorError('invalidResponse', 'ec2: DescribeTags returned the same NextToken twice');
      if (token !== undefined) seen.add(token);
    } while (token !== undefined);
    return out;
  }

  async modifyLaunchPermission(
    imageId: string,
    change: { add?: readonly Ec2LaunchPermission[]; remove?: readonly Ec2LaunchPermission[] },
    options: Ec2CallOptions = {},
  ): Promise<void> {
    const wire = (p: Ec2LaunchPermission): LaunchPermission => ('group' in p ? { Group: 'all' } : { UserId: p.userId });
    const add = (change.add ?? []).map(wire);
    const remove = (change.remove ?? []).map(wire);
    if (add.length === 0 && remove.length === 0) return;
    await this.#send(
      'ModifyImageAttribute',
      new ModifyImageAttributeCommand({
        ImageId: imageId,
        LaunchPermission: { ...(add.length > 0 ? { Add: add } : {}), ...(remove.length > 0 ? { Remove: remove } : {}) },
      }),
      options,
    );
  }

  async modifyDescription(imageId: string, description: string, options: Ec2CallOptions = {}): Promise<void> {
    await this.#send(
      'ModifyImageAttribute',
      new ModifyImageAttributeCommand({ ImageId: imageId, Description: { Value: description } }),
      options,
    );
  }

  async describeLaunchPermissions(imageId: string, options: Ec2CallOptions = {}): Promise<Ec2LaunchPermission[]> {
    const output = await this.#send(
      'DescribeImageAttribute',
      new DescribeImageAttributeCommand({ ImageId: imageId, Attribute: 'launchPermission' }),
      options,
    );
    const parsed = parseEc2(launchPermissionsOutput, output, 'the DescribeImageAttribute response');
    return (parsed.LaunchPermissions ?? []).map((p) =>
      p.Group !== undefined ? { group: 'all' as const } : { userId: p.UserId! },
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
  }

  async #send(action: string, command: object, options: Ec2CallOptions): Promise<unknown> {
    if (this.#closed) throw new VisorError('internal', `ec2: ${action} after close()`);
    try {
      // The SDK's overloads cannot be named generically; every output is validated by the caller.
      return await this.#client.send(command as never, options.signal ? { abortSignal: options.signal } : {});
    } catch (error) {
      throw ec2Error(error, `ec2: ${action}`);
    }
  }
}
