import { createHash } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';
import { isVisorError, VisorError, type ErrorKind } from '../../errors.js';

/**
 * How to reach one S3-family service (AWS S3, Eucalyptus Walrus, Nimbus Cumulus, Ceph RGW,
 * Swift s3api). Shared by the s3 store and the adapters that speak S3 to their cloud.
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
  });
  // DeleteObjects must carry Content-MD5 on Swift, Walrus, Cumulus and older AWS regions; the
  // SDK now sends only x-amz-checksum-crc32 there. Content-MD5 is signed, so it is added before
  // signing (build step).
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown };
      if (context.commandName === 'DeleteObjectsCommand' && request.headers && !request.headers['content-md5'] && (typeof request.body === 'string' || request.body instanceof Uint8Array)) {
        request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', name: 'visorDeleteObjectsContentMd5', priority: 'low' },
  );
  return client;
}

/** What the SDK attaches to the errors it throws (service faults and transport failures). */
interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  Code?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
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

const timeoutCodes = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);
const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ECONNABORTED']);

function kindByStatus(status: number): ErrorKind | undefined {
  if (status === 401) return 'auth';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'notFound';
  if (status === 408) return 'timeout';
  if (status === 409 || status === 412) return 'conflict';
  if (status === 416) return 'invalidInput';
  if (status === 429 || status >= 500) return status === 501 ? 'unsupported' : 'unavailable';
  if (status >= 200 && status < 300) return 'invalidResponse'; // a 2xx the SDK could not parse
  if (status >= 400) return 'invalidInput';
  return undefined;
}

/**
 * An SDK error as a VisorError whose kind callers can act on (retry, exit code, HTTP status).
 * `context` says what was being done ("s3: GetObject visor/abc"). The message is one line and
 * carries no credentials: SDK messages name at most the access key id, never the secret.
 */
export function s3Error(error: unknown, context: string): VisorError {
  if (isVisorError(error)) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as SdkErrorShape;
  const name = typeof e.name === 'string' ? e.name : undefined;
  const code = typeof e.Code === 'string' ? e.Code : name;
  const sysCode = typeof e.code === 'string' ? e.code : undefined;
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const requestId = typeof e.$metadata?.requestId === 'string' ? e.$metadata.requestId : undefined;
  const rawMessage = typeof e.message === 'string' ? e.message : String(error);

  let kind: ErrorKind | undefined = code !== undefined ? kindByCode[code] : undefined;
  if (kind === undefined && sysCode !== undefined) {
    if (timeoutCodes.has(sysCode)) kind = 'timeout';
    else if (networkCodes.has(sysCode)) kind = 'unavailable';
  }
  if (kind === undefined && status !== undefined) kind = kindByStatus(status);
  if (kind === undefined && /socket hang up|network|connect/i.test(rawMessage)) kind = 'unavailable';
  if (kind === undefined && /deserializ|parse|xml/i.test(rawMessage)) kind = 'invalidResponse';
  kind ??= 'internal';

  const label = [code !== undefined && code !== 'Error' && code !== 'UnknownError' && code !== 'Unknown' ? code : undefined, sysCode, status !== undefined ? `HTTP ${status}` : undefined]
    .filter((part) => part !== undefined)
    .join(', ');
  // One line; HTML error pages (Swift answers unsigned requests with one) are cut short.
  const message = rawMessage.replace(/\s+/g, ' ').trim().slice(0, 300);
  return new VisorError(kind, `${context}: ${message || 'request failed'}${label ? ` (${label})` : ''}`, {
    cause: error,
    details: {
      ...(code !== undefined ? { code } : {}),
      ...(sysCode !== undefined ? { errno: sysCode } : {}),
      ...(status !== undefined ? { status } : {}),
      ...(requestId !== undefined ? { requestId } : {}),
    },
  });
}
