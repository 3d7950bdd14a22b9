import { isVisorError, VisorError, type ErrorKind } from '../../errors.js';

/**
 * What a PostgreSQL failure means to the person running visor: one line that names the catalog
 * (never its password) and says what to do. Server errors carry a SQLSTATE `code`; connection
 * failures carry the socket's errno code or only a message (the pool's connect timeout).
 */
export function postgresError(error: unknown, where: string): VisorError {
  if (isVisorError(error)) return error;
  const e = error as { code?: string; message?: string };
  const code = e.code ?? '';
  const detail = firstLine(e.message ?? String(error));
  const make = (kind: ErrorKind, what: string) =>
    new VisorError(kind, `PostgreSQL catalog ${where}: ${what}`, { cause: error, details: { code } });
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ENOENT': // a unix socket that is not there
      return make('unavailable', `cannot connect (${detail}); start PostgreSQL or fix catalog.options.url`);
    case '28P01':
    case '28000':
      return make('config', `${detail}; check the user and password (catalog.options.url or .password)`);
    case '3D000':
      return make('config', `${detail}; create it (createdb) or fix the database in catalog.options.url`);
    case '42501':
      return make('config', `${detail}; grant the catalog's user the rights on its schema, or run as its owner`);
    case '57014':
      return make('timeout', `a statement took longer than catalog.options.statementTimeoutSeconds (${detail})`);
    case '55P03':
      return make('timeout', `waited too long for a lock (${detail})`);
    case '53300':
    case '53400':
      return make(
        'unavailable',
        `the server refuses more connections (${detail}); lower catalog.options.poolSize or raise max_connections`,
      );
    case '57P01':
    case '57P02':
    case '57P03':
      return make('unavailable', `the server is shutting down or starting up (${detail}); try again`);
    case '40001':
    case '40P01':
      return make('unavailable', `a concurrent transaction got in the way (${detail}); try again`);
    case '22P05':
    case '22021':
    case '54000':
      return make('invalidInput', detail);
  }
  if (code.startsWith('08')) return make('unavailable', `the connection failed (${detail}); try again`);
  if (/Query read timeout/i.test(detail)) {
    return make('timeout', `the server did not answer a statement in time (${detail}); is PostgreSQL overloaded?`);
  }
  if (/timeout exceeded when trying to connect|Connection terminated|connect ETIMEDOUT/i.test(detail)) {
    return make(
      'unavailable',
      `no connection within catalog.options.connectTimeoutSeconds (${detail}); is PostgreSQL up?`,
    );
  }
  if (/password must be a string|SASL/i.test(detail)) {
    return make(
      'config',
      `the server asks for a password and none was usable (${detail}); set catalog.options.password`,
    );
  }
  if (/self[- ]signed|certificate|SSL|TLS/i.test(detail)) {
    return make('config', `TLS: ${detail}; check sslmode and sslrootcert in catalog.options.url`);
  }
  return make('internal', detail);
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').trim();
}
