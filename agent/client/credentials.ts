import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { VisorError } from '../../core/errors.js';

export interface ClientSettings {
  url: string;
  accessKey?: string;
  secretKey?: string;
  /** PEM file of the CA(s) that signed an https server's certificate, beside the system's. */
  caFile?: string;
  /** Where the settings came from, for error messages. */
  source: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:4568';

/**
 * Client settings: the environment (VISOR_URL, VISOR_ACCESS_KEY, VISOR_SECRET_KEY,
 * VISOR_CA_FILE) wins over a profile in the credentials file (~/.config/visor/credentials, INI:
 * [profile] url=, access_key=, secret_key=, ca_file=), which wins over the default URL.
 */
export function loadClientSettings(
  env: Readonly<Record<string, string | undefined>>,
  options: { profile?: string | undefined; url?: string | undefined } = {},
): ClientSettings {
  const file =
    env['VISOR_CREDENTIALS_FILE'] ??
    join(env['XDG_CONFIG_HOME'] ?? join(env['HOME'] ?? homedir(), '.config'), 'visor', 'credentials');
  const profileName = options.profile ?? env['VISOR_PROFILE'] ?? 'default';
  const profile = readProfile(file, profileName, options.profile !== undefined || env['VISOR_PROFILE'] !== undefined);
  const pick = (envName: string, key: string) => nonEmpty(env[envName]) ?? profile?.[key];
  const accessKey = pick('VISOR_ACCESS_KEY', 'access_key');
  const secretKey = pick('VISOR_SECRET_KEY', 'secret_key');
  const caFile = pick('VISOR_CA_FILE', 'ca_file');
  return {
    url: (options.url ?? pick('VISOR_URL', 'url') ?? DEFAULT_URL).replace(/\/+$/, ''),
    ...(accessKey ? { accessKey } : {}),
    ...(secretKey ? { secretKey } : {}),
    ...(caFile ? { caFile } : {}),
    source: profile ? `profile "${profileName}" in ${file}` : 'the environment',
  };
}

function readProfile(file: string, name: string, required: boolean): Record<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (required) {
      const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
      throw new VisorError('config', `cannot read the credentials file ${file}: ${why}`);
    }
    return undefined;
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    throw new VisorError('config', `${file} holds secret keys but others can read it: run chmod 600 ${file}`);
  }
  const profiles = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const [index, rawLine] of text.split('\n').entries()) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section) {
      current = {};
      profiles.set(section[1]!.trim(), current);
      continue;
    }
    const pair = /^([a-z_]+)\s*=\s*(.*)$/.exec(line);
    if (!pair || !current) throw new VisorError('config', `${file}:${index + 1}: expected [profile] or key = value`);
    current[pair[1]!] = pair[2]!.trim();
  }
  const profile = profiles.get(name);
  if (!profile && required) throw new VisorError('config', `no profile [${name}] in ${file}`);
  return profile;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
