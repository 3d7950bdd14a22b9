import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { VisorError } from '../../errors.js';
import type { OciCredentials } from './auth.js';

/**
 * Credentials for a registry from a `docker login`-style auth file (`{"auths": {"HOST":
 * {"auth": base64("user:password")}}}`, as docker, podman, skopeo and oras write it). `path`
 * defaults to $REGISTRY_AUTH_FILE, then the docker config in the home folder; a default file that does not
 * exist means no credentials, a named one that does not exist is a `config` error. Credential
 * helpers (`credsStore`) are not run.
 */
export async function credentialsFromAuthFile(registry: string, path?: string): Promise<OciCredentials> {
  const named = path ?? process.env['REGISTRY_AUTH_FILE'];
  const file = named ?? join(homedir(), '.docker', 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (!named && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VisorError('config', `cannot read the registry auth file ${file}: ${(error as Error).message}`);
  }
  let auths: Record<string, { auth?: unknown; identitytoken?: unknown; registrytoken?: unknown }>;
  try {
    const parsed = JSON.parse(text) as { auths?: unknown };
    auths = (typeof parsed.auths === 'object' && parsed.auths !== null ? parsed.auths : {}) as typeof auths;
  } catch {
    throw new VisorError('config', `the registry auth file ${file} is not JSON`);
  }
  const entry = auths[registry] ?? auths[`https://${registry}`] ?? auths[`http://${registry}`];
  if (!entry) return undefined;
  if (typeof entry.registrytoken === 'string' && entry.registrytoken !== '') return { token: entry.registrytoken };
  if (typeof entry.auth !== 'string') return undefined;
  const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0)
    throw new VisorError('config', `the registry auth file ${file}: the entry for ${registry} is malformed`);
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
