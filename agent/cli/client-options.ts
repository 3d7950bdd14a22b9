import type { Command } from 'commander';
import { VisorError } from '../../core/errors.js';
import type { VisorClient } from '../client/client.js';
import type { CliIo } from './io.js';

/** Client options every image verb takes. */
export interface ClientOptions {
  url?: string;
  address?: string;
  port?: string;
  profile?: string;
  json?: boolean;
}

export interface ListOptions extends ClientOptions {
  query?: string;
  search?: string;
  sort?: string;
  dir?: string;
  limit?: string;
}

export function withClientOptions(command: Command): Command {
  return command
    .option('--url <url>', 'visor API URL (default: $VISOR_URL, the profile, or http://127.0.0.1:4568)')
    .option('-a, --address <host>', 'API host (VISOR style; with --port)')
    .option('-p, --port <port>', 'API port (VISOR style; with --address)')
    .option('--profile <name>', 'profile in ~/.config/visor/credentials (default: $VISOR_PROFILE or "default")')
    .option('--json', 'print JSON');
}

export function withListOptions(command: Command): Command {
  return withClientOptions(command)
    .option(
      '-q, --query <query>',
      'filters, e.g. "architecture=x86_64&format=qcow2" (any attribute or custom property)',
    )
    .option('--search <text>', 'only images with this text in the name, a tag or the description (any case)')
    .option('-s, --sort <attribute>', 'sort by this attribute (default _id)')
    .option('-d, --dir <dir>', 'asc or desc')
    .option('-l, --limit <n>', 'at most this many (default: all)');
}

/** The API client for these options (loaded on use: the HTTP client is not needed before). */
export async function clientFor(options: ClientOptions, io: CliIo): Promise<VisorClient> {
  // Checked whatever else is given: "-a HOST -p abc" must not become http://HOST:abc.
  if (options.port !== undefined) {
    const port = /^\d{1,5}$/.test(options.port) ? Number(options.port) : Number.NaN;
    if (!(port >= 1 && port <= 65535)) {
      throw new VisorError('invalidInput', `--port must be a TCP port (1-65535), got "${options.port.slice(0, 40)}"`);
    }
  }
  if (options.address !== undefined && !/^[A-Za-z0-9.-]+$|^\[?[0-9A-Fa-f:.]+\]?$/.test(options.address)) {
    throw new VisorError(
      'invalidInput',
      `--address must be a host name or IP address, got "${options.address.slice(0, 60)}"`,
    );
  }
  if (options.url !== undefined && (options.address !== undefined || options.port !== undefined)) {
    throw new VisorError('invalidInput', 'give either --url or --address/--port, not both');
  }
  const { VisorClient } = await import('../client/client.js');
  const { loadClientSettings } = await import('../client/credentials.js');
  const { address, port } = options;
  const host = address?.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
  const url = options.url ?? (host || port ? `http://${host ?? '127.0.0.1'}:${port ?? '4568'}` : undefined);
  return new VisorClient(loadClientSettings(io.env, { profile: options.profile, url }));
}

export function listQuery(options: ListOptions): Record<string, string> {
  const query: Record<string, string> = {};
  if (options.query) for (const [k, v] of new URLSearchParams(options.query)) query[k] = v;
  if (options.search !== undefined) query['search'] = options.search;
  if (options.sort) query['sort'] = options.sort;
  if (options.dir) query['dir'] = options.dir;
  if (options.limit) query['limit'] = options.limit;
  return query;
}

/** `key=value` arguments -> wire metadata: lists split on commas, numbers where the field is numeric, empty clears. */
export function parseKeyValues(pairs: readonly string[]): Record<string, string | number | string[] | null> {
  const out: Record<string, string | number | string[] | null> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new VisorError('invalidInput', `"${pair}" is not key=value`);
    const key = pair.slice(0, at).trim();
    const value = pair.slice(at + 1);
    if (key in out) throw new VisorError('invalidInput', `${key} is given twice`);
    if (value === '') out[key] = null;
    else if (key === 'tags' || key === 'members')
      out[key] = value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    else if ((key === 'min_disk' || key === 'min_ram') && /^\d+$/.test(value)) out[key] = Number(value);
    else out[key] = value;
  }
  return out;
}
