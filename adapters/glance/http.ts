import { isAxiosError } from 'axios';
import { isVisorError, VisorError, type ErrorKind } from '../../core/errors.js';
import { glanceErrorSchema, keystoneErrorSchema } from './schema.js';

/**
 * Turns what axios throws into a VisorError whose kind the caller can act on. The message is
 * one line: what failed, the HTTP status and the peer's own explanation (JSON or HTML body,
 * tags stripped); the cause carries only status and code, never the request (it holds the
 * token and, for Keystone, the password).
 */
export function httpError(action: string, error: unknown): VisorError {
  if (isVisorError(error)) return error;
  if (!isAxiosError(error)) {
    const e = error as Error;
    if (e?.name === 'AbortError') return new VisorError('unavailable', `${action}: aborted`, { cause: sanitized(e) });
    return new VisorError('unavailable', `${action}: ${e?.message ?? String(error)}`, { cause: sanitized(e) });
  }
  const status = error.response?.status;
  // A status the request accepts, and yet an error: the answer was cut off while its body was
  // being read (connection lost, or no more bytes in time). A network failure, not a bad answer.
  const cutOff = status !== undefined && error.config?.validateStatus?.(status) === true;
  if (status === undefined || cutOff) {
    const code = error.code ?? '';
    const what = cutOff ? `${action}: the answer (HTTP ${status}) was cut off` : action;
    if (code === 'ERR_CANCELED') return new VisorError('unavailable', `${what}: aborted`, { cause: sanitized(error), details: { code } });
    if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') return new VisorError('timeout', `${what}: no answer in time (${error.message})`, { cause: sanitized(error), details: { code } });
    if (tlsTrustCodes.has(code)) {
      return new VisorError('config', `${what}: the server's TLS certificate is not trusted (${code}); give its CA in the caBundle option`, { cause: sanitized(error), details: { code } });
    }
    return new VisorError('unavailable', `${what}: ${code || 'network error'} (${error.message})`, { cause: sanitized(error), details: { code } });
  }
  const explanation = explain(error.response?.data);
  return new VisorError(kindOfStatus(status), `${action}: HTTP ${status}${explanation ? `: ${explanation}` : ''}`, {
    cause: sanitized(error),
    details: { status },
  });
}

export function kindOfStatus(status: number): ErrorKind {
  if (status === 401) return 'auth';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'notFound';
  // 410: the image was deleted while its data was being uploaded.
  if (status === 409 || status === 410) return 'conflict';
  if (status === 429 || status >= 500) return 'unavailable';
  // 400, 413 (size cap / quota), 415 (media type), 416 (range): the request cannot succeed as sent.
  if (status >= 400) return 'invalidInput';
  return 'invalidResponse';
}

/** The peer's explanation from an error body: Glance JSON, Keystone JSON, or an HTML page. */
export function explain(data: unknown): string {
  let text = '';
  if (typeof data === 'string') {
    try {
      return explain(JSON.parse(data));
    } catch {
      text = data;
    }
  } else if (Buffer.isBuffer(data)) {
    return explain(data.toString('utf8'));
  } else if (data !== null && typeof data === 'object') {
    const keystone = keystoneErrorSchema.safeParse(data);
    const glance = glanceErrorSchema.safeParse(data);
    text = keystone.success ? (keystone.data.error.message ?? keystone.data.error.title ?? '') : glance.success ? (glance.data.message ?? glance.data.title ?? '') : '';
  }
  return oneLine(stripHtml(text)).slice(0, 300);
}

function stripHtml(text: string): string {
  // An HTML error page: the <title> repeats the status line; the explanation is in the body.
  const body = /<body[^>]*>([\s\S]*?)<\/body>/i.exec(text)?.[1] ?? text;
  return body
    .replace(/<h1>[\s\S]*?<\/h1>/i, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&');
}

const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();

const tlsTrustCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A cause safe to log: no request config (headers carry the token, bodies the password). */
function sanitized(error: unknown): Error {
  const e = error as { message?: string; code?: string; response?: { status?: number } };
  const out = new Error(e?.message ?? String(error));
  out.name = 'HttpError';
  Object.assign(out, { code: e?.code, status: e?.response?.status });
  return out;
}
