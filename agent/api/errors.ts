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
