import type { ErrorKind, VisorError } from '../../core/errors.js';

/** Error kind -> HTTP status. Bad input is always a 4xx; only our own faults are 5xx. */
const statusByKind: Record<ErrorKind, number> = {
  invalidInput: 400,
  config: 400,
  integrity: 400,
  unsafe: 422,
  tooLarge: 413,
  unsupported: 400,
  plugin: 400,
  auth: 401,
  forbidden: 403,
  notFound: 404,
  conflict: 409,
  invalidResponse: 502,
  unavailable: 503,
  timeout: 504,
  internal: 500,
};

export function httpStatus(error: VisorError): number {
  const explicit = (error as { status?: unknown }).status;
  return typeof explicit === 'number' ? explicit : statusByKind[error.kind];
}

/** VISOR's error body. */
export function errorBody(status: number, message: string): { code: number; message: string } {
  return { code: status, message };
}

const serverFaults: Record<number, string> = {
  502: 'a backend answered something visor cannot accept',
  503: 'a backend is unavailable; try again later',
  504: 'a backend did not answer in time; try again later',
};

/**
 * What a client is told of a 5xx: no endpoints, buckets, keys or paths; the request id finds
 * the details in the log.
 */
export function genericServerError(status: number, requestId: string): string {
  return `${serverFaults[status] ?? 'internal error'} (request id ${requestId}; the details are in the server's log)`;
}
