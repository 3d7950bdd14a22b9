import { createHmac } from 'node:crypto';

/**
 * AWS Signature Version 2 for Query APIs (EC2 Query on old Eucalyptus and on Nimbus), as the
 * server checks it (eucalyptus clc/.../auth/login/Hmacv2LoginModule.java; apis.md §2.2):
 *
 *   StringToSign = VERB \n lower(Host) \n path \n canonicalQuery
 *   canonicalQuery = every parameter but Signature, sorted by the bytes of the name (then of the
 *                    value), RFC 3986-encoded name=value pairs joined by &
 *   Signature = Base64(HMAC-SHA256 or HMAC-SHA1(secret, StringToSign))
 *
 * Written here because no maintained library signs Query requests with V2: @smithy ships only
 * SigV4/SigV4a, `aws-sdk` v2 (whose V2 signer did) reached end-of-support on 2025-09-08,
 * and aws-lib / awssum have been unmaintained since 2012 (aws-sign2 is S3's REST signature,
 * another algorithm). It is small, and tested against Eucalyptus's own test vectors.
 */

export type SignatureMethod = 'HmacSHA256' | 'HmacSHA1';

/** RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - _ . ~, upper-case hex (not `+` for space). */
export function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** The canonical query string: parameters sorted by the UTF-8 bytes of their names, then values. */
export function canonicalQuery(params: ReadonlyArray<readonly [string, string]>): string {
  return params
    .filter(([name]) => name !== 'Signature')
    .slice()
    .sort(([an, av], [bn, bv]) => byteOrder(an, bn) || byteOrder(av, bv))
    .map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`)
    .join('&');
}

export function stringToSign(
  method: string,
  host: string,
  path: string,
  params: ReadonlyArray<readonly [string, string]>,
): string {
  return `${method.toUpperCase()}\n${host.toLowerCase()}\n${path === '' ? '/' : path}\n${canonicalQuery(params)}`;
}

export function signV2(secretAccessKey: string, method: SignatureMethod, text: string): string {
  return createHmac(method === 'HmacSHA256' ? 'sha256' : 'sha1', secretAccessKey)
    .update(text, 'utf8')
    .digest('base64');
}

export interface SigV2Options {
  accessKeyId: string;
  secretAccessKey: string;
  signatureMethod: SignatureMethod;
  /** Clock for the Timestamp parameter (tests). */
  now?: () => Date;
}

/** The parts of the SDK's HttpRequest the signer touches (structural: no @smithy import needed). */
export interface SignableRequest {
  method: string;
  hostname: string;
  port?: number | undefined;
  path: string;
  headers: Record<string, string>;
  body?: unknown;
}

/** ISO 8601 without milliseconds, as the Query APIs document Timestamp. */
const timestamp = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * Signs a form-encoded Query POST in place: adds AWSAccessKeyId, SignatureVersion, SignatureMethod,
 * Timestamp and Signature to the body, fixes Content-Length, and drops any SigV4 headers.
 */
export function signQueryRequest<R extends SignableRequest>(request: R, options: SigV2Options): R {
  if (typeof request.body !== 'string') throw new Error('SigV2 signs form-encoded Query bodies only');
  const params: Array<[string, string]> = [...new URLSearchParams(request.body)].filter(
    ([name]) => !['AWSAccessKeyId', 'SignatureVersion', 'SignatureMethod', 'Timestamp', 'Signature'].includes(name),
  );
  params.push(
    ['AWSAccessKeyId', options.accessKeyId],
    ['SignatureVersion', '2'],
    ['SignatureMethod', options.signatureMethod],
    ['Timestamp', timestamp(options.now?.() ?? new Date())],
  );
  const host =
    request.headers['host'] ?? (request.port !== undefined ? `${request.hostname}:${request.port}` : request.hostname);
  const signature = signV2(
    options.secretAccessKey,
    options.signatureMethod,
    stringToSign(request.method, host, request.path, params),
  );
  params.push(['Signature', signature]);
  const body = params.map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`).join('&');
  request.body = body;
  for (const name of Object.keys(request.headers)) {
    if (/^(authorization|x-amz-date|x-amz-content-sha256|x-amz-security-token)$/i.test(name))
      delete request.headers[name];
  }
  request.headers['content-length'] = String(Buffer.byteLength(body));
  request.headers['content-type'] = 'application/x-www-form-urlencoded; charset=utf-8';
  return request;
}
