import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * visor's request signature: HMAC-SHA256 over a canonical form of the request (method, path,
 * sorted query, date, content hash, and every x-image-meta-* header), sent as
 *   Authorization: VISOR-HMAC-SHA256 Credential=<access key>, Signature=<hex>
 * with the date in x-visor-date, a random nonce in x-visor-nonce and the body's sha256 in
 * x-visor-content-sha256. It keeps
 * VISOR's idea (per-user keys, S3-style HMAC) and fixes its weaknesses: SHA-256 instead of
 * SHA-1, the query string and the body are signed, the date is checked against a clock-skew
 * window, and a signature is never accepted twice (the nonce makes every request unique), and signatures are compared
 * in constant time.
 */
export const SIGNING_ALGORITHM = 'VISOR-HMAC-SHA256';
export const DATE_HEADER = 'x-visor-date';
export const CONTENT_HASH_HEADER = 'x-visor-content-sha256';
/**
 * A fresh random value per request: two identical requests in the same second still differ, so replays can be refused.
 */
export const NONCE_HEADER = 'x-visor-nonce';
/** No longer accepted: a body nobody signed could be swapped in transit. Kept to name it in the refusal. */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/**
 * For streamed uploads (chunked): the client computes the body's sha256 while it sends it and
 * signs it in the trailers — x-visor-content-sha256 and x-visor-trailer-signature, an HMAC
 * chained to the request's own signature — and the server verifies both before the image
 * becomes available.
 */
export const STREAMING_PAYLOAD = 'STREAMING-SHA256-TRAILER';
export const TRAILER_SIGNATURE_HEADER = 'x-visor-trailer-signature';
/** The length of a streamed body, signed up front (chunked requests carry no Content-Length). */
export const DECODED_LENGTH_HEADER = 'x-visor-decoded-content-length';
export const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

export interface SignableRequest {
  method: string;
  /** Path as sent, without the query string (percent-encoding kept as is). */
  path: string;
  /** Query parameters, repeated keys as several entries. */
  query: readonly (readonly [string, string])[];
  /** Lower-case header names. */
  headers: Readonly<Record<string, string | undefined>>;
}

const rfc3986 = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export function canonicalQuery(query: SignableRequest['query']): string {
  return query
    .map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

export function stringToSign(request: SignableRequest): string {
  const metaHeaders = Object.entries(request.headers)
    .filter(([name, value]) => name.startsWith('x-image-meta-') && value !== undefined)
    .map(([name, value]) => `${name}:${String(value).trim()}`)
    .sort();
  const decodedLength = request.headers[DECODED_LENGTH_HEADER];
  return [
    SIGNING_ALGORITHM,
    request.method.toUpperCase(),
    request.path,
    canonicalQuery(request.query),
    request.headers[DATE_HEADER] ?? '',
    request.headers[NONCE_HEADER] ?? '',
    request.headers[CONTENT_HASH_HEADER] ?? '',
    (request.headers['content-type'] ?? '').trim(),
    // Only when present, so that signatures of requests without it are as they always were.
    ...(decodedLength !== undefined ? [`${DECODED_LENGTH_HEADER}:${String(decodedLength).trim()}`] : []),
    ...metaHeaders,
  ].join('\n');
}

/** The trailer signature of a streamed body: its sha256, chained to the signature of the request it came with. */
export function trailerSignature(secretKey: string, requestSignature: string, sha256: string): string {
  const text = `${SIGNING_ALGORITHM}-TRAILER\n${requestSignature}\n${sha256}`;
  return createHmac('sha256', secretKey).update(text).digest('hex');
}

export function signature(secretKey: string, request: SignableRequest): string {
  return createHmac('sha256', secretKey).update(stringToSign(request)).digest('hex');
}

export function authorizationHeader(accessKey: string, secretKey: string, request: SignableRequest): string {
  return `${SIGNING_ALGORITHM} Credential=${accessKey}, Signature=${signature(secretKey, request)}`;
}

export function parseAuthorization(header: string | undefined): { accessKey: string; signature: string } | undefined {
  const match = /^VISOR-HMAC-SHA256 Credential=([A-Z0-9]{1,64}), ?Signature=([0-9a-f]{64})$/.exec(header?.trim() ?? '');
  return match ? { accessKey: match[1]!, signature: match[2]! } : undefined;
}

export function signaturesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/** `20261122T010203Z`: the date format of x-visor-date. */
export function formatSigningDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

export function parseSigningDate(value: string | undefined): Date | undefined {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(value ?? '');
  if (!m) return undefined;
  const date = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Headers a client adds to sign a request (the content hash must already be in `headers`). */
export function signRequest(
  accessKey: string,
  secretKey: string,
  request: SignableRequest,
  now: Date = new Date(),
): Record<string, string> {
  const headers = { ...request.headers, [DATE_HEADER]: formatSigningDate(now) } as Record<string, string>;
  headers[NONCE_HEADER] ??= randomBytes(16).toString('hex');
  headers[CONTENT_HASH_HEADER] ??= EMPTY_SHA256;
  return { ...headers, authorization: authorizationHeader(accessKey, secretKey, { ...request, headers }) };
}
