import { isVisorError, VisorError, type ErrorKind } from '../errors.js';

/**
 * Failures on the wire as error kinds, once for every protocol visor speaks (Glance and Keystone
 * over axios, S3 and EC2 through the AWS SDK, XML-RPC to OpenNebula). Callers act on the kind
 * (retry, exit code, HTTP status), so the same HTTP status or socket failure must read the same
 * whichever cloud sent it.
 */

/**
 * The kind of an HTTP status. 2xx/3xx reaching here are answers the caller could not accept
 * (unparsable, or a redirect it does not follow).
 */
export function kindOfStatus(status: number): ErrorKind {
  if (status === 401) return 'auth';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'notFound';
  if (status === 408) return 'timeout';
  // 410: deleted while being worked on (Glance: while its data was uploaded); 412: a condition failed.
  if (status === 409 || status === 410 || status === 412) return 'conflict';
  if (status === 501) return 'unsupported';
  if (status === 429 || status >= 500) return 'unavailable';
  // 400, 413 (size cap / quota), 415 (media type), 416 (range): the request cannot succeed as sent.
  if (status >= 400) return 'invalidInput';
  return 'invalidResponse';
}

/** Socket errors that mean "no answer in time". */
export const timeoutCodes: ReadonlySet<string> = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);

/** Socket errors that mean "the peer cannot be reached right now". */
export const networkCodes: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  // A connection the socket layer gave up (axios reuses the code for its own timeout: see http.ts).
  'ECONNABORTED',
]);

/** TLS errors that only a configuration change (the peer's CA) can fix. */
export const tlsTrustCodes: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The kind of a socket or TLS error code, when it is one of the known ones. */
export function kindOfTransportCode(code: string): ErrorKind | undefined {
  if (timeoutCodes.has(code)) return 'timeout';
  if (networkCodes.has(code)) return 'unavailable';
  if (tlsTrustCodes.has(code)) return 'config';
  return undefined;
}

/** Text from a peer on one line, cut short: an HTML error page must not flood a log line. */
export const oneLine = (text: string, max = 300): string => text.replace(/\s+/g, ' ').trim().slice(0, max);

/** What the AWS SDK attaches to the errors it throws (service faults and transport failures). */
interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
}

/** How one AWS-SDK service (S3, EC2) names its faults. */
export interface SdkErrorRules {
  /** The service's error codes and their kinds. */
  codes: Readonly<Record<string, ErrorKind>>;
  /** The service error code an error carries, if any (default: `Code`, else the error's name). */
  codeOf?: (error: unknown) => string | undefined;
  /** A kind for codes the table does not name (EC2: `*.NotFound`). */
  fallback?: (code: string) => ErrorKind | undefined;
  /** Added to the message of a TLS trust failure: where to give the peer's CA. */
  tlsHint?: string;
}

/** Codes the SDK uses when the service sent none: not worth showing. */
const vagueCodes = new Set(['Error', 'Unknown', 'UnknownError']);

/**
 * An AWS SDK error as a VisorError. `context` says what was being done ("s3: GetObject
 * visor/abc"). The message is one line and carries no credentials: SDK messages name at most the
 * access key id, never the secret.
 */
export function sdkError(error: unknown, context: string, rules: SdkErrorRules): VisorError {
  if (isVisorError(error)) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as SdkErrorShape;
  const name = typeof e.name === 'string' ? e.name : undefined;
  const code = rules.codeOf ? rules.codeOf(error) : typeof e.Code === 'string' ? e.Code : name;
  const sysCode = typeof e.code === 'string' ? e.code : undefined;
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const requestId = typeof e.$metadata?.requestId === 'string' ? e.$metadata.requestId : undefined;
  const rawMessage = typeof e.message === 'string' ? e.message : String(error);

  let kind: ErrorKind | undefined = code !== undefined ? (rules.codes[code] ?? rules.fallback?.(code)) : undefined;
  if (kind === undefined && name === 'AbortError') kind = 'unavailable';
  if (kind === undefined && name !== undefined) kind = rules.codes[name];
  if (kind === undefined && sysCode !== undefined) kind = kindOfTransportCode(sysCode);
  if (kind === undefined && status !== undefined && status >= 200) kind = kindOfStatus(status);
  if (kind === undefined && /socket hang up|network|connect/i.test(rawMessage)) kind = 'unavailable';
  if (kind === undefined && /deserializ|parse|xml|char/i.test(rawMessage)) kind = 'invalidResponse';
  kind ??= 'internal';

  const shownCode = code !== undefined && !vagueCodes.has(code) ? code : undefined;
  const label = [shownCode, sysCode, status !== undefined ? `HTTP ${status}` : undefined]
    .filter((p) => p !== undefined)
    .join(', ');
  const hint =
    kind === 'config' && sysCode !== undefined && tlsTrustCodes.has(sysCode) && rules.tlsHint
      ? `; ${rules.tlsHint}`
      : '';
  return new VisorError(
    kind,
    `${context}: ${oneLine(rawMessage) || 'request failed'}${label ? ` (${label})` : ''}${hint}`,
    {
      cause: error,
      details: {
        ...(code !== undefined ? { code } : {}),
        ...(sysCode !== undefined ? { errno: sysCode } : {}),
        ...(status !== undefined ? { status } : {}),
        ...(requestId !== undefined ? { requestId } : {}),
      },
    },
  );
}
