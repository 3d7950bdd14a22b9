import { signV2 } from '../ec2/sigv2.js';

/**
 * S3's REST authentication, Signature Version 2 (the header scheme and query-string presigning),
 * for the S3 servers that speak nothing newer: Eucalyptus Walrus, Nimbus Cumulus, old Ceph and
 * Swift installations. As S3's documentation defines it:
 *
 *   StringToSign = VERB \n Content-MD5 \n Content-Type \n Date \n
 *                  CanonicalizedAmzHeaders CanonicalizedResource
 *   Authorization = "AWS " AccessKeyId ":" Base64(HMAC-SHA1(secret, UTF-8(StringToSign)))
 *
 * Presigned URLs put `Expires` (seconds since the epoch) where the Date goes and carry
 * AWSAccessKeyId, Expires and Signature in the query. Hand-written for the same reason as the EC2
 * Query signer beside it: no maintained library signs V2 any more.
 */

/** The query parameters that name a sub-resource, and so belong to the signed resource. */
const subResources = new Set([
  'acl',
  'cors',
  'delete',
  'lifecycle',
  'location',
  'logging',
  'notification',
  'partNumber',
  'policy',
  'requestPayment',
  'restore',
  'tagging',
  'torrent',
  'uploadId',
  'uploads',
  'versionId',
  'versioning',
  'versions',
  'website',
]);

/** Overrides of the response headers, signed as well (with their decoded values). */
const responseOverrides = new Set([
  'response-cache-control',
  'response-content-disposition',
  'response-content-encoding',
  'response-content-language',
  'response-content-type',
  'response-expires',
]);

export type QueryValue = string | null | undefined | ReadonlyArray<string | null>;

/**
 * The resource part: `/bucket` (for a virtual-hosted request) + the path as sent, then the
 * sub-resources and response overrides of the query, sorted by name, with decoded values
 * (`?partNumber=2&uploadId=ID`, `?uploads`, `?delete`). Everything else in the query is not signed.
 */
export function canonicalResource(
  path: string,
  query: Readonly<Record<string, QueryValue>> = {},
  virtualBucket?: string,
): string {
  const signed = Object.keys(query)
    .filter((name) => subResources.has(name) || responseOverrides.has(name))
    .sort()
    .map((name) => {
      const raw = query[name];
      const value = Array.isArray(raw) ? raw[0] : (raw as string | null | undefined);
      return value === null || value === undefined || value === '' ? name : `${name}=${value}`;
    });
  const base = `${virtualBucket !== undefined ? `/${virtualBucket}` : ''}${path === '' ? '/' : path}`;
  return signed.length > 0 ? `${base}?${signed.join('&')}` : base;
}

/** `x-amz-*` headers: lower-case names, sorted, values trimmed and unfolded, one per line. */
export function canonicalAmzHeaders(headers: Readonly<Record<string, string | undefined>>): string {
  const amz = new Map<string, string[]>();
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!lower.startsWith('x-amz-') || value === undefined) continue;
    amz.set(lower, [...(amz.get(lower) ?? []), value.replace(/\s*\r?\n\s*/g, ' ').trim()]);
  }
  return [...amz.keys()]
    .sort()
    .map((name) => `${name}:${amz.get(name)!.join(',')}\n`)
    .join('');
}

export interface StringToSignParts {
  method: string;
  contentMd5?: string | undefined;
  contentType?: string | undefined;
  /** The Date header (empty when x-amz-date is sent), or Expires for a presigned URL. */
  date: string;
  headers?: Readonly<Record<string, string | undefined>>;
  /** The canonical resource (`canonicalResource`). */
  resource: string;
}

export function s3StringToSign(parts: StringToSignParts): string {
  return [
    parts.method.toUpperCase(),
    parts.contentMd5 ?? '',
    parts.contentType ?? '',
    parts.date,
    `${canonicalAmzHeaders(parts.headers ?? {})}${parts.resource}`,
  ].join('\n');
}

export function s3SignatureV2(secretAccessKey: string, stringToSign: string): string {
  return signV2(secretAccessKey, 'HmacSHA1', stringToSign);
}

export interface S3V2Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

/** The parts of the SDK's HttpRequest the signer touches (structural: no @smithy import needed). */
export interface SignableS3Request {
  method: string;
  hostname: string;
  path: string;
  query?: Record<string, QueryValue>;
  headers: Record<string, string>;
}

/** Headers that only SigV4 defines: a V2 server would sign them as plain x-amz-* or refuse them. */
const sigV4Only = new RegExp(
  '^(authorization|x-amz-date|x-amz-content-sha256|x-amz-decoded-content-length|' +
    'x-amz-checksum-.*|x-amz-sdk-checksum-algorithm|x-amz-trailer)$',
  'i',
);

function header(headers: Readonly<Record<string, string>>, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

/**
 * Signs an SDK request in place with the V2 header scheme: drops SigV4's headers, sets Date
 * (and x-amz-security-token for temporary credentials), then `Authorization: AWS KEY:SIGNATURE`.
 * `virtualBucket` names the bucket when it is in the host name rather than the path.
 */
export function signS3RequestV2<R extends SignableS3Request>(
  request: R,
  credentials: S3V2Credentials,
  options: { now?: Date; virtualBucket?: string | undefined } = {},
): R {
  for (const name of Object.keys(request.headers)) {
    if (sigV4Only.test(name) || /^(date|x-amz-security-token)$/i.test(name)) delete request.headers[name];
  }
  request.headers['date'] = (options.now ?? new Date()).toUTCString();
  if (credentials.sessionToken !== undefined) request.headers['x-amz-security-token'] = credentials.sessionToken;
  const text = s3StringToSign({
    method: request.method,
    contentMd5: header(request.headers, 'content-md5'),
    contentType: header(request.headers, 'content-type'),
    date: request.headers['date'],
    headers: request.headers,
    resource: canonicalResource(request.path, request.query ?? {}, options.virtualBucket),
  });
  request.headers['authorization'] =
    `AWS ${credentials.accessKeyId}:${s3SignatureV2(credentials.secretAccessKey, text)}`;
  return request;
}

/**
 * A V2 query-string presigned URL for GET (or `method`) of `url`, valid until `expires`.
 * `resource` is the canonical resource of that URL (bucket and encoded key, `canonicalResource`).
 */
export function presignS3UrlV2(
  url: URL,
  resource: string,
  credentials: S3V2Credentials,
  expires: Date,
  method = 'GET',
): string {
  const expiresAt = String(Math.floor(expires.getTime() / 1000));
  const headers =
    credentials.sessionToken !== undefined ? { 'x-amz-security-token': credentials.sessionToken } : undefined;
  const text = s3StringToSign({ method, date: expiresAt, resource, ...(headers ? { headers } : {}) });
  const signed = new URL(url);
  signed.searchParams.set('AWSAccessKeyId', credentials.accessKeyId);
  signed.searchParams.set('Expires', expiresAt);
  if (credentials.sessionToken !== undefined) signed.searchParams.set('x-amz-security-token', credentials.sessionToken);
  signed.searchParams.set('Signature', s3SignatureV2(credentials.secretAccessKey, text));
  return signed.toString();
}

/**
 * The bucket of a virtual-hosted request (`bucket.host`), given the host of the service endpoint
 * (or AWS's `s3[.-]region.amazonaws.com` when none is configured); undefined for path style.
 */
export function virtualHostBucket(hostname: string, endpointHost: string | undefined): string | undefined {
  const host = hostname.toLowerCase();
  if (endpointHost !== undefined) {
    const base = endpointHost.toLowerCase();
    return host !== base && host.endsWith(`.${base}`) ? hostname.slice(0, -base.length - 1) : undefined;
  }
  const aws = /^(.+?)\.s3([.-][a-z0-9-]+)*\.amazonaws\.com(\.cn)?$/.exec(host);
  return aws ? hostname.slice(0, aws[1]!.length) : undefined;
}
