import { createHash } from 'node:crypto';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { ErrorKind, VisorError } from '../../errors.js';
import { sdkError } from '../errors.js';
import { signS3RequestV2, virtualHostBucket, type S3V2Credentials, type SignableS3Request } from './sigv2.js';

/**
 * How to reach one S3-family service (AWS S3, Eucalyptus Walrus, Nimbus Cumulus, Ceph RGW,
 * Swift s3api). Shared by the s3 store and the adapters that speak S3 to their cloud (Eucalyptus's
 * Walrus, Nimbus's Cumulus).
 */
export interface S3ConnectionOptions {
  /** Omit for AWS; the service's URL otherwise (http://host:port). */
  endpoint?: string;
  region: string;
  /** `http://host/bucket/key` instead of `http://bucket.host/key`: what non-AWS services need. */
  forcePathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Attempts per request, retries included (SDK default: 3). */
  maxAttempts?: number;
  /**
   * 4 (default): SigV4 by the SDK. 2: S3's header-based Signature Version 2 (`sigv2.ts`), for
   * servers that know nothing newer (Walrus, Cumulus).
   */
  signatureVersion?: 2 | 4;
}

/** Time to open a TCP connection, and the longest a socket may stay silent mid-request. */
const connectionTimeoutMs = 10_000;
const socketTimeoutMs = 120_000;

/** An S3 client (AWS SDK v3) with the settings that old S3 clouds and Swift need. */
export function createS3Client(options: S3ConnectionOptions): S3Client {
  const client = new S3Client({
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    credentials: {
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken !== undefined ? { sessionToken: options.sessionToken } : {}),
    },
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
    // The SDK's default ("flexible checksums") sends stream bodies aws-chunked with a trailing
    // CRC32, which Swift, Walrus and Cumulus reject; we send Content-MD5 ourselves instead.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: connectionTimeoutMs, requestTimeout: socketTimeoutMs },
    ...(options.signatureVersion === 2 ? { httpAuthSchemes: sigV2AuthSchemes(options) } : {}),
  } as S3ClientConfig);
  // DeleteObjects must carry Content-MD5 on Swift, Walrus, Cumulus and older AWS regions; the
  // SDK now sends only x-amz-checksum-crc32 there. Content-MD5 is signed, so it is added before
  // signing (build step).
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown };
      if (
        context.commandName === 'DeleteObjectsCommand' &&
        request.headers &&
        !request.headers['content-md5'] &&
        (typeof request.body === 'string' || request.body instanceof Uint8Array)
      ) {
        request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'visorDeleteObjectsContentMd5', priority: 'low' },
  );
  return client;
}

/**
 * The S3 auth scheme provider asks for aws.auth#sigv4 (or sigv4a); answering both with a V2 signer
 * keeps the SDK's retries, serialisation and parsing and changes only the signature.
 */
function sigV2AuthSchemes(options: S3ConnectionOptions): NonNullable<S3ClientConfig['httpAuthSchemes']> {
  const credentials = {
    accessKeyId: options.accessKeyId,
    secretAccessKey: options.secretAccessKey,
    ...(options.sessionToken !== undefined ? { sessionToken: options.sessionToken } : {}),
  };
  const endpointHost = options.endpoint !== undefined ? new URL(options.endpoint).hostname : undefined;
  const signer = new SkewCorrectedV2Signer(credentials, (request) =>
    options.forcePathStyle ? undefined : virtualHostBucket(request.hostname, endpointHost),
  );
  return ['aws.auth#sigv4', 'aws.auth#sigv4a'].map((schemeId) => ({
    schemeId,
    identityProvider: () => async () => credentials,
    signer,
  })) as unknown as NonNullable<S3ClientConfig['httpAuthSchemes']>;
}

/** What the SDK hands a signer: its resolved config, whose clock offset the SDK's retries share. */
interface SigningProperties {
  config?: { systemClockOffset?: number };
}

/**
 * V2 signs a Date that the server checks (15 minutes either way). Like the SDK's own SigV4 signer,
 * this one learns the server's clock from every answer's Date header and signs with the corrected
 * time, so a skewed host recovers on the SDK's retry of a RequestTimeTooSkewed instead of failing.
 */
class SkewCorrectedV2Signer {
  constructor(
    private readonly credentials: S3V2Credentials,
    private readonly virtualBucket: (request: SignableS3Request) => string | undefined,
  ) {}

  async sign(request: SignableS3Request, _identity: unknown, properties: SigningProperties = {}) {
    const now = new Date(Date.now() + (properties.config?.systemClockOffset ?? 0));
    return signS3RequestV2(request, this.credentials, { now, virtualBucket: this.virtualBucket(request) });
  }

  errorHandler(properties: SigningProperties = {}) {
    return (error: unknown): never => {
      const failed = error as { $response?: { headers?: Record<string, string> }; $metadata?: object } | undefined;
      const before = properties.config?.systemClockOffset ?? 0;
      learnClock(failed?.$response?.headers, properties);
      const after = properties.config?.systemClockOffset ?? 0;
      // What the SDK's retry strategy looks for (as its SigV4 signer marks it): worth another try.
      if (failed?.$metadata && after !== before && Math.abs(after) >= 240_000)
        Object.assign(failed.$metadata, { clockSkewCorrected: true });
      throw error;
    };
  }

  successHandler(response: { headers?: Record<string, string> }, properties: SigningProperties = {}): void {
    learnClock(response.headers, properties);
  }
}

function learnClock(headers: Record<string, string> | undefined, properties: SigningProperties): void {
  // An Age header means a cache answered: its Date is not the server's clock now.
  if (!headers || !properties.config || headers['age'] !== undefined) return;
  const serverTime = Date.parse(headers['date'] ?? '');
  if (!Number.isNaN(serverTime)) properties.config.systemClockOffset = serverTime - Date.now();
}

const kindByCode: Record<string, ErrorKind> = {
  NoSuchKey: 'notFound',
  NotFound: 'notFound',
  NoSuchBucket: 'notFound',
  NoSuchUpload: 'notFound',
  NoSuchVersion: 'notFound',
  AccessDenied: 'forbidden',
  AllAccessDisabled: 'forbidden',
  AccountProblem: 'forbidden',
  InvalidObjectState: 'forbidden',
  SignatureDoesNotMatch: 'auth',
  InvalidAccessKeyId: 'auth',
  InvalidToken: 'auth',
  ExpiredToken: 'auth',
  TokenRefreshRequired: 'auth',
  MissingSecurityHeader: 'auth',
  RequestTimeTooSkewed: 'auth',
  CredentialsProviderError: 'auth',
  // A wrong region or a bucket that lives elsewhere: the configuration has to change.
  AuthorizationHeaderMalformed: 'config',
  PermanentRedirect: 'config',
  IllegalLocationConstraintException: 'config',
  InvalidBucketName: 'config',
  BucketAlreadyExists: 'conflict',
  BucketAlreadyOwnedByYou: 'conflict',
  BucketNotEmpty: 'conflict',
  OperationAborted: 'conflict',
  PreconditionFailed: 'conflict',
  BadDigest: 'integrity',
  XAmzContentSHA256Mismatch: 'integrity',
  IncompleteBody: 'integrity',
  InvalidDigest: 'internal', // our Content-MD5 was malformed: a bug on our side
  InvalidRange: 'invalidInput',
  EntityTooSmall: 'invalidInput',
  EntityTooLarge: 'invalidInput',
  InvalidPart: 'invalidInput',
  InvalidPartOrder: 'invalidInput',
  InvalidArgument: 'invalidInput',
  InvalidRequest: 'invalidInput',
  KeyTooLongError: 'invalidInput',
  MetadataTooLarge: 'invalidInput',
  MalformedXML: 'invalidInput',
  NotImplemented: 'unsupported',
  RequestTimeout: 'timeout',
  TimeoutError: 'timeout',
  RequestTimeoutException: 'timeout',
  SlowDown: 'unavailable',
  ServiceUnavailable: 'unavailable',
  InternalError: 'unavailable',
  AbortError: 'unavailable',
};

/**
 * An SDK error as a VisorError whose kind callers can act on (retry, exit code, HTTP status).
 * `context` says what was being done ("s3: GetObject visor/abc"); see `sdkError`.
 */
export function s3Error(error: unknown, context: string): VisorError {
  return sdkError(error, context, { codes: kindByCode, tlsHint: "the endpoint's certificate is not trusted" });
}
