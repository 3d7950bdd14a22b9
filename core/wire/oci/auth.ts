import { VisorError } from '../../errors.js';

/** How visor authenticates to a registry: nothing, a user and password, or a ready bearer token. */
export type OciCredentials = { username: string; password: string } | { token: string } | undefined;

/** One `WWW-Authenticate` challenge: its scheme and parameters (realm, service, scope, ...). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235): `Bearer realm="...",service="...",scope="..."`
 * or `Basic realm="..."`. Only the first challenge is read: registries send one.
 */
export function parseChallenge(header: string): Challenge | undefined {
  const match = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const pattern = /([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*,?\s*/gy;
  const rest = match[2] ?? '';
  pattern.lastIndex = 0;
  while (pattern.lastIndex < rest.length) {
    const found = pattern.exec(rest);
    if (found === null) break;
    params[found[1]!.toLowerCase()] = found[2] !== undefined ? found[2].replace(/\\(.)/g, '$1') : found[3]!;
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

/** `repository:NAME:ACTIONS` for a token request. */
export const repositoryScope = (repository: string, actions: readonly string[]) =>
  `repository:${repository}:${actions.join(',')}`;

/** The token a token server answered, checked (the spec allows `token` or `access_token`). */
export function tokenFrom(body: unknown, realm: string): string {
  const value = body as { token?: unknown; access_token?: unknown } | null;
  const token = typeof value?.token === 'string' ? value.token : value?.access_token;
  if (typeof token !== 'string' || token === '' || token.length > 64 * 1024 || /[\s]/.test(token)) {
    throw new VisorError('invalidResponse', `the registry's token server (${realm}) answered no usable token`);
  }
  return token;
}

export function basicHeader(credentials: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}
