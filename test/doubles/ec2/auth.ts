import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Request verification as the servers do it, written from the specifications (not with the
 * client libraries under test):
 * - Signature V4: AWS's "Create a canonical request / string to sign / signing key" steps
 *   (Eucalyptus Hmacv4LoginModule runs AWS's aws4_testsuite against the same algorithm);
 * - Signature V2: Eucalyptus Hmacv2LoginModule (apis.md §2.2).
 */

export type AuthResult =
  | { ok: true; version: 'v4' | 'v2'; accessKeyId: string }
  | { ok: false; code: string; message: string };

export interface VerifyInput {
  method: string;
  /** Path as received (percent-encoded as sent). */
  path: string;
  /** Raw query string (after `?`), '' when none. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Form parameters (query + body) for SigV2. */
  params: ReadonlyArray<readonly [string, string]>;
  secrets: ReadonlyMap<string, string>;
  /** Service name expected in the SigV4 scope (ec2, s3). */
  service: string;
  region?: string;
  now?: Date;
  maxSkewMs?: number;
}

const header = (headers: VerifyInput['headers'], name: string): string | undefined => {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(',') : value;
};

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

const encode3986 = (value: string) =>
  encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function canonicalQueryV4(query: string): string {
  if (query === '') return '';
  return query
    .split('&')
    .filter((p) => p !== '')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, '%20'));
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, '%20'));
      return [encode3986(name), encode3986(value)] as const;
    })
    .sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([n, v]) => `${n}=${v}`)
    .join('&');
}

const equal = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

export function verifySigV4(input: VerifyInput): AuthResult {
  const authorization = header(input.headers, 'authorization') ?? '';
  const match = new RegExp(
    '^AWS4-HMAC-SHA256 ' +
      String.raw`Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*` +
      String.raw`SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$`,
  ).exec(authorization);
  if (!match)
    return {
      ok: false,
      code: 'IncompleteSignature',
      message: 'The request signature does not conform to AWS standards',
    };
  const [, accessKeyId, day, region, service, signedHeaders, signature] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const secret = input.secrets.get(accessKeyId);
  if (secret === undefined)
    return { ok: false, code: 'AuthFailure', message: 'AWS was not able to validate the provided access credentials' };
  if (service !== input.service)
    return {
      ok: false,
      code: 'AuthFailure',
      message: `Credential should be scoped to correct service: '${input.service}'`,
    };
  if (input.region !== undefined && region !== input.region)
    return {
      ok: false,
      code: 'AuthFailure',
      message: `Credential should be scoped to a valid region, not '${region}'`,
    };
  const amzDate = header(input.headers, 'x-amz-date') ?? '';
  if (!/^\d{8}T\d{6}Z$/.test(amzDate) || amzDate.slice(0, 8) !== day)
    return { ok: false, code: 'AuthFailure', message: 'X-Amz-Date is missing or does not match the credential scope' };
  const when = Date.UTC(
    +amzDate.slice(0, 4),
    +amzDate.slice(4, 6) - 1,
    +amzDate.slice(6, 8),
    +amzDate.slice(9, 11),
    +amzDate.slice(11, 13),
    +amzDate.slice(13, 15),
  );
  if (Math.abs((input.now ?? new Date()).getTime() - when) > (input.maxSkewMs ?? 15 * 60_000))
    return { ok: false, code: 'RequestExpired', message: 'Request has expired' };
  const names = signedHeaders.split(';');
  if (!names.includes('host')) return { ok: false, code: 'AuthFailure', message: 'The host header must be signed' };
  const canonicalHeaders = names
    .map((n) => `${n}:${(header(input.headers, n) ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const declared = header(input.headers, 'x-amz-content-sha256');
  const bodyHash = sha256Hex(input.body);
  if (declared !== undefined && declared !== 'UNSIGNED-PAYLOAD' && declared !== bodyHash)
    return {
      ok: false,
      code: 'XAmzContentSHA256Mismatch',
      message: 'The provided x-amz-content-sha256 header does not match what was computed',
    };
  const canonicalRequest = [
    input.method,
    input.path,
    canonicalQueryV4(input.query),
    canonicalHeaders,
    signedHeaders,
    declared ?? bodyHash,
  ].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  const expected = createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
  if (!equal(expected, signature))
    return { ok: false, code: 'AuthFailure', message: 'AWS was not able to validate the provided access credentials' };
  return { ok: true, version: 'v4', accessKeyId };
}

/** The V2 string to sign, as Hmacv2LoginModule builds it. */
export function sigV2StringToSign(
  method: string,
  host: string,
  path: string,
  params: ReadonlyArray<readonly [string, string]>,
): string {
  const sorted = params
    .filter(([n]) => n !== 'Signature')
    .map(([n, v]) => [Buffer.from(n, 'utf8'), Buffer.from(v, 'utf8'), n, v] as const)
    .sort((a, b) => Buffer.compare(a[0], b[0]) || Buffer.compare(a[1], b[1]))
    .map(([, , n, v]) => `${encode3986(n)}=${encode3986(v)}`)
    .join('&');
  return `${method}\n${host.toLowerCase()}\n${path}\n${sorted}`;
}

export function verifySigV2(input: VerifyInput): AuthResult {
  const get = (name: string) => input.params.find(([n]) => n === name)?.[1];
  const accessKeyId = get('AWSAccessKeyId');
  const signature = get('Signature');
  const method = get('SignatureMethod') ?? 'HmacSHA1';
  if (accessKeyId === undefined || signature === undefined)
    return { ok: false, code: 'MissingClientTokenId', message: 'Request must contain AWSAccessKeyId and Signature' };
  if (get('SignatureVersion') !== '2')
    return { ok: false, code: 'AuthFailure', message: 'Only SignatureVersion 2 is accepted here' };
  if (method !== 'HmacSHA256' && method !== 'HmacSHA1')
    return { ok: false, code: 'InvalidParameterValue', message: `Unsupported SignatureMethod ${method}` };
  const secret = input.secrets.get(accessKeyId);
  if (secret === undefined)
    return { ok: false, code: 'AuthFailure', message: 'AWS was not able to validate the provided access credentials' };
  const timestamp = get('Timestamp');
  const expires = get('Expires');
  if ((timestamp === undefined) === (expires === undefined))
    return { ok: false, code: 'MissingParameter', message: 'Exactly one of Timestamp and Expires is required' };
  const when = Date.parse(timestamp ?? expires!);
  const now = (input.now ?? new Date()).getTime();
  if (
    Number.isNaN(when) ||
    (timestamp !== undefined ? Math.abs(now - when) > (input.maxSkewMs ?? 15 * 60_000) : now > when)
  )
    return { ok: false, code: 'RequestExpired', message: 'Request has expired' };
  const host = header(input.headers, 'host') ?? '';
  // The server accepts the Host with or without its port (apis.md §2.2).
  const hosts = [host, host.replace(/:\d+$/, '')];
  for (const h of hosts) {
    const expected = createHmac(method === 'HmacSHA256' ? 'sha256' : 'sha1', secret)
      .update(sigV2StringToSign(input.method, h, input.path, input.params), 'utf8')
      .digest('base64');
    if (equal(expected, signature)) return { ok: true, version: 'v2', accessKeyId };
  }
  return { ok: false, code: 'AuthFailure', message: 'AWS was not able to validate the provided access credentials' };
}

/** V4 when an Authorization header is present, V2 when the parameters carry a Signature. */
export function verifyRequest(input: VerifyInput): AuthResult {
  if (header(input.headers, 'authorization') !== undefined) return verifySigV4(input);
  if (input.params.some(([n]) => n === 'Signature')) return verifySigV2(input);
  return { ok: false, code: 'MissingAuthenticationToken', message: 'Request is missing Authentication Token' };
}
