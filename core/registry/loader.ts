import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { VisorError } from '../errors.js';
import type { PluginSource } from './registry.js';

export interface LoadedPackage {
  source: PluginSource;
  /** Whatever the package exports as plugins; the registry checks their shape. */
  candidates: unknown[];
}

const packageNamePattern = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

/**
 * Finds `name` in a node_modules folder above any of `fromDirs` (the config file's folder first,
 * then visor's own installation, for plugins installed beside a global visor) and imports it.
 * A plugin that cannot be found or loaded stops start-up: running without it would silently
 * leave clouds or stores unmanaged.
 */
export async function loadPluginPackage(name: string, fromDirs: readonly string[]): Promise<LoadedPackage> {
  if (!packageNamePattern.test(name)) throw new VisorError('plugin', `"${name}" is not a valid npm package name`);
  const dir = findPackageDir(name, fromDirs);
  if (!dir) {
    throw new VisorError(
      'plugin',
      `plugin package "${name}" is not installed (looked in node_modules ` +
        `above ${fromDirs.join(', ')}); install it with: npm install ${name}`,
    );
  }
  let manifest: { version?: string; main?: string; exports?: unknown };
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as typeof manifest;
  } catch (error) {
    throw new VisorError(
      'plugin',
      `plugin package "${name}" has an unreadable package.json: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const entry = resolve(dir, entryPoint(manifest));
  let exported: Record<string, unknown>;
  try {
    exported = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
  } catch (error) {
    throw new VisorError('plugin', `plugin package "${name}" failed to load: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const value = exported['plugins'] ?? exported['default'];
  if (value === undefined)
    throw new VisorError(
      'plugin',
      `plugin package "${name}" exports no plugin (expected a default export or an export named "plugins")`,
    );
  const candidates = Array.isArray(value) ? value : [value];
  if (candidates.length === 0)
    throw new VisorError('plugin', `plugin package "${name}" exports an empty list of plugins`);
  return {
    source: { type: 'package', package: name, ...(manifest.version ? { version: manifest.version } : {}), path: dir },
    candidates,
  };
}

function findPackageDir(name: string, fromDirs: readonly string[]): string | undefined {
  for (const start of fromDirs) {
    let dir = resolve(start);
    for (;;) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return undefined;
}

/** The ESM entry of a package: `exports` (import/node/default conditions), then `main`. */
function entryPoint(manifest: { main?: string; exports?: unknown }): string {
  const pick = (value: unknown): string | undefined => {
    if (typeof value === 'string') return value;
    if (value && typeof value === 'object') {
      const conditions = value as Record<string, unknown>;
      for (const key of ['.', 'import', 'node', 'default']) {
        const found = key in conditions ? pick(conditions[key]) : undefined;
        if (found) return found;
      }
    }
    return undefined;
  };
  return pick(manifest.exports) ?? manifest.main ?? 'index.js';
}
