import { isAxiosError } from './axios.js';
import { isVisorError, VisorError } from '../errors.js';
import { kindOfStatus, kindOfTransportCode, oneLine, tlsTrustCodes } from './errors.js';

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
    if (code === 'ERR_CANCELED')
      return new VisorError('unavailable', `${what}: aborted`, { cause: sanitized(error), details: { code } });
    // axios says ECONNABORTED when its own `timeout` passed.
    if (code === 'ECONNABORTED' || kindOfTransportCode(code) === 'timeout') {
      const cause = sanitized(error);
      return new VisorError('timeout', `${what}: no answer in time (${error.message})`, { cause, details: { code } });
    }
    if (tlsTrustCodes.has(code)) {
      return new VisorError(
        'config',
        `${what}: the server's TLS certificate is not trusted (${code}); give its CA in the caBundle option`,
        { cause: sanitized(error), details: { code } },
      );
    }
    return new VisorError('unavailable', `${what}: ${code || 'network error'} (${error.message})`, {
      cause: sanitized(error),
      details: { code },
    });
  }
  const explanation = explain(error.response?.data);
  return new VisorError(kindOfStatus(status), `${action}: HTTP ${status}${explanation ? `: ${explanation}` : ''}`, {
    cause: sanitized(error),
    details: { status },
  });
}

/**
 * The peer's explanation from an error body: OpenStack JSON (`{"message": ...}` from Glance's
 * webob, `{"error": {"message": ...}}` from Keystone), or an HTML page.
 */
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
    const body = data as { error?: unknown; message?: unknown; title?: unknown };
    const nested = (body.error !== null && typeof body.error === 'object' ? body.error : {}) as typeof body;
    const candidates = [nested.message, nested.title, body.message, body.title];
    const first = candidates.find((v) => typeof v === 'string' && v !== '');
    text = typeof first === 'string' ? first : '';
  }
  return oneLine(stripHtml(text));
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

/** A cause safe to log: no request config (headers carry the token, bodies the password). */
function sanitized(error: unknown): Error {
  const e = error as { message?: string; code?: string; response?: { status?: number } };
  const out = new Error(e?.message ?? String(error));
  out.name = 'HttpError';
  Object.assign(out, { code: e?.code, status: e?.response?.status });
  return out;
}
