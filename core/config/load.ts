import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { VisorError, type FieldIssue } from '../errors.js';
import { loadPluginPackage } from '../registry/loader.js';
import type { PluginKind } from '../registry/ids.js';
import type { PluginRegistry } from '../registry/registry.js';
import { formatPath, zodIssues } from '../validation.js';
import { interpolateEnv, type Env } from './interpolate.js';
import { configFileSchema, type ConfigFile } from './schema.js';
import { syncPolicySchema, type SyncPolicy } from './sync-policy.js';

export interface PluginInstance {
  type: string;
  /** Validated (and defaulted) by the plugin's own schema. */
  options: unknown;
}

/** A store with the limits syncs honour when they read from it. */
export interface StoreInstance extends PluginInstance {
  maxBandwidth?: number;
  concurrency?: number;
}

export interface SubscriptionConfig extends Omit<ConfigFile['subscriptions'][string], 'options'> {
  /** Validated (and defaulted) by the source plugin's own schema. */
  options: unknown;
}

export interface CloudConfig {
  adapter: string;
  options: unknown;
  sync: SyncPolicy;
}

/** The validated, frozen configuration every component is built from. */
export interface VisorConfig {
  /** Absolute path of the file it came from; undefined for the embedded default. */
  file: string | undefined;
  dataDir: string;
  plugins: string[];
  logging: ConfigFile['logging'];
  catalog: PluginInstance;
  stores: Record<string, StoreInstance>;
  defaultStore: string;
  server: ConfigFile['server'];
  agent: ConfigFile['agent'];
  clouds: Record<string, CloudConfig>;
  lifecycle: ConfigFile['lifecycle'];
  subscriptions: Record<string, SubscriptionConfig>;
  webhooks: ConfigFile['webhooks'];
}

/** A configuration problem located in its file. */
export interface ConfigIssue extends FieldIssue {
  line?: number;
  column?: number;
}

export class ConfigError extends VisorError {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];

  constructor(file: string, issues: readonly ConfigIssue[]) {
    const lines = issues.map(
      (i) => `  ${file}${i.line ? `:${i.line}:${i.column ?? 1}` : ''}: ${i.path ? `${i.path}: ` : ''}${i.message}`,
    );
    super(
      'config',
      `${file}: ${issues.length === 1 ? '1 problem' : `${issues.length} problems`}\n${lines.join('\n')}`,
      { details: { issues } },
    );
    this.file = file;
    this.issues = issues;
  }
}

export interface LoadConfigOptions {
  /** The YAML file; without it, the embedded default (SQLite catalog + file store). */
  file?: string | undefined;
  env?: Env;
  /** `--data-dir` from the command line: wins over the environment and the file. */
  dataDir?: string | undefined;
  /** Built-in plugins already registered; third-party ones named in the file are added to it. */
  registry: PluginRegistry;
  /** Where else to look for plugin packages (visor's own installation). */
  pluginSearchDirs?: readonly string[];
}

export function defaultDataDir(env: Env): string {
  const xdg = env['XDG_DATA_HOME'];
  return join(xdg && isAbsolute(xdg) ? xdg : join(env['HOME'] ?? homedir(), '.local', 'share'), 'visor');
}

export async function loadConfig(options: LoadConfigOptions): Promise<VisorConfig> {
  const env = options.env ?? process.env;
  const file = options.file === undefined ? undefined : resolve(options.file);
  const label = file === undefined ? '(embedded default)' : basename(file);
  const issues: ConfigIssue[] = [];

  let raw: unknown = {};
  let locate: (path: string) => Pick<ConfigIssue, 'line' | 'column'> = () => ({});
  if (file !== undefined) {
    const text = readConfigText(file);
    const lineCounter = new LineCounter();
    // resolveKnownTags off: !!set, !!omap, !!binary, !!timestamp would make Sets, Maps, Buffers and
    // Dates that the schema cannot see into; unresolved, they are reported below.
    const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, resolveKnownTags: false });
    if (doc.errors.length > 0) {
      // One syntax error usually cascades into dozens: the first one is the one to fix.
      const first = doc.errors[0]!;
      const more = doc.errors.length > 1 ? ' (fix this first: the errors after it follow from it)' : '';
      const at = position(lineCounter, first.pos[0]);
      const line = text.split('\n')[(at.line ?? 1) - 1] ?? '';
      // The classic: ${VAR} unquoted inside { } or [ ] reads as a YAML mapping.
      const hint =
        /\$\{/.test(line) && /[{[]/.test(line) ? '; put quotes around values with ${...} inside { } or [ ]' : '';
      throw new ConfigError(label, [
        { path: '', message: `invalid YAML: ${yamlProblem(first.message)}${hint}${more}`, ...at },
      ]);
    }
    const warning = doc.warnings[0];
    if (warning) {
      throw new ConfigError(label, [
        {
          path: '',
          message: `invalid YAML: ${firstLine(warning.message)} (a visor config uses no YAML tags)`,
          ...position(lineCounter, warning.pos[0]),
        },
      ]);
    }
    locate = (path) => locateNode(doc, lineCounter, path);
    try {
      raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
    } catch (error) {
      // yaml refuses alias (and merge) bombs while building the tree: a file mistake, not ours.
      throw new ConfigError(label, [
        {
          path: '',
          message: `invalid YAML: ${firstLine((error as Error).message)} (at most 100 alias expansions)`,
          line: 1,
          column: 1,
        },
      ]);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new ConfigError(label, [
        {
          path: '',
          message: 'must be a mapping of settings (key: value), not a list or a single value',
          line: 1,
          column: 1,
        },
      ]);
    }
  }

  const envIssues: FieldIssue[] = [];
  raw = interpolateEnv(raw, env, envIssues);
  issues.push(...envIssues);

  const parsed = configFileSchema.safeParse(raw);
  if (!parsed.success) {
    issues.push(...zodIssues(parsed.error));
    throw new ConfigError(
      label,
      issues.map((i) => ({ ...i, ...locate(i.path) })),
    );
  }
  const cfg = parsed.data;
  const baseDir = file === undefined ? process.cwd() : dirname(file);

  // Third-party plugins first: they may provide the catalog, stores or adapters named below.
  const searchDirs = [baseDir, ...(options.pluginSearchDirs ?? [visorInstallDir()])];
  for (const [index, name] of cfg.plugins.entries()) {
    try {
      const loaded = await loadPluginPackage(name, searchDirs);
      for (const candidate of loaded.candidates) options.registry.register(candidate, loaded.source);
    } catch (error) {
      issues.push({ path: formatPath(['plugins', index]), message: (error as Error).message });
    }
  }

  const instance = async (
    kind: PluginKind,
    what: string,
    id: string,
    opts: unknown,
    path: PropertyKey[],
    idKey: string,
  ): Promise<unknown> => {
    if (!options.registry.get(kind, id)) {
      const known = options.registry.ids(kind);
      issues.push({
        path: formatPath([...path, idKey]),
        message:
          `unknown ${what} "${id}" (registered: ${known.join(', ') || 'none'}; ` +
          `add third-party ones under "plugins")`,
      });
      return undefined;
    }
    const result = await options.registry.validateOptions(kind, id, opts ?? {}, [...path, 'options']);
    issues.push(...result.issues);
    return result.value;
  };

  const catalog: PluginInstance = {
    type: cfg.catalog.type,
    options: await instance('catalog', 'catalog type', cfg.catalog.type, cfg.catalog.options, ['catalog'], 'type'),
  };
  const stores: Record<string, StoreInstance> = {};
  for (const [name, store] of Object.entries(cfg.stores)) {
    stores[name] = {
      type: store.type,
      options: await instance('store', 'store type', store.type, store.options, ['stores', name], 'type'),
      ...(store.maxBandwidth !== undefined ? { maxBandwidth: store.maxBandwidth } : {}),
      ...(store.concurrency !== undefined ? { concurrency: store.concurrency } : {}),
    };
  }
  const clouds: Record<string, CloudConfig> = {};
  for (const [name, cloud] of Object.entries(cfg.clouds)) {
    clouds[name] = {
      adapter: cloud.adapter,
      options: await instance('iaas', 'adapter', cloud.adapter, cloud.options, ['clouds', name], 'adapter'),
      sync: cloud.sync ?? syncPolicySchema.parse({}),
    };
  }

  const subscriptions: Record<string, SubscriptionConfig> = {};
  for (const [name, sub] of Object.entries(cfg.subscriptions)) {
    const path = ['subscriptions', name];
    const validated = await instance('source', 'source', sub.source, sub.options, path, 'source');
    subscriptions[name] = { ...sub, options: validated };
  }

  const storeNames = Object.keys(cfg.stores);
  let defaultStore =
    cfg.defaultStore ?? (storeNames.length === 1 ? storeNames[0] : storeNames.includes('local') ? 'local' : undefined);
  if (cfg.defaultStore !== undefined && !storeNames.includes(cfg.defaultStore)) {
    issues.push({
      path: 'defaultStore',
      message:
        `names store "${cfg.defaultStore}", which is not under ` +
        `"stores" (have: ${storeNames.join(', ') || 'none'})`,
    });
  } else if (defaultStore === undefined) {
    issues.push({
      path: storeNames.length === 0 ? 'stores' : 'defaultStore',
      message:
        storeNames.length === 0
          ? 'at least one store is needed'
          : `is required when there are several stores (${storeNames.join(', ')})`,
    });
  }
  defaultStore ??= '';

  if (issues.length > 0)
    throw new ConfigError(
      label,
      issues.map((i) => ({ ...i, ...locate(i.path) })),
    );

  // The command line wins over the environment, which wins over the file.
  const fromEnv = nonEmpty(env['VISOR_DATA_DIR']);
  const dataDir =
    options.dataDir !== undefined
      ? resolve(options.dataDir)
      : fromEnv !== undefined
        ? resolve(fromEnv)
        : cfg.dataDir !== undefined
          ? resolve(baseDir, cfg.dataDir)
          : defaultDataDir(env);

  return deepFreeze({
    file,
    dataDir,
    plugins: cfg.plugins,
    logging: cfg.logging,
    catalog,
    stores,
    defaultStore,
    // TLS files, like plugin packages, are found beside the config file.
    server: cfg.server.tls
      ? {
          ...cfg.server,
          tls: { cert: resolve(baseDir, cfg.server.tls.cert), key: resolve(baseDir, cfg.server.tls.key) },
        }
      : cfg.server,
    agent: cfg.agent,
    clouds,
    lifecycle: cfg.lifecycle,
    subscriptions,
    webhooks: cfg.webhooks,
  });
}

/** A config file is a few KiB; anything far larger is a mistake or an attack, refused before it is read. */
export const maxConfigBytes = 1024 * 1024;

function readConfigText(file: string): string {
  let bytes: Buffer;
  try {
    const size = statSync(file).size;
    if (size > maxConfigBytes)
      throw new VisorError(
        'config',
        `config file ${file} is ${size} bytes; a config file is at most ${maxConfigBytes} bytes`,
      );
    bytes = readFileSync(file);
  } catch (error) {
    if (error instanceof VisorError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (error as Error).message;
    throw new VisorError('config', `cannot read config file ${file}: ${why}`, { cause: error });
  }
  // Binary content would otherwise come out as dozens of YAML syntax errors.
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new VisorError('config', `config file ${file} is not a text file (a NUL byte at offset ${nul})`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new VisorError('config', `config file ${file} is not valid UTF-8 text`);
  }
}

function position(lineCounter: LineCounter, offset: number): Pick<ConfigIssue, 'line' | 'column'> {
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/** Line and column of the deepest node that exists on `path` (the key itself when present). */
function locateNode(doc: Document, lineCounter: LineCounter, path: string): Pick<ConfigIssue, 'line' | 'column'> {
  const segments = path.match(/[^.[\]]+/g) ?? [];
  let node: Node | null | undefined = doc.contents as Node | null;
  let found: Pick<ConfigIssue, 'line' | 'column'> = node?.range ? position(lineCounter, node.range[0]) : {};
  for (const segment of segments) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === segment);
      if (!pair) break;
      const key = pair.key as Node;
      if (key.range) found = position(lineCounter, key.range[0]);
      node = pair.value as Node | null;
    } else if (isSeq(node)) {
      const item = node.items[Number(segment)] as Node | undefined;
      if (!item) break;
      if (item.range) found = position(lineCounter, item.range[0]);
      node = item;
    } else break;
  }
  return found;
}

/** yaml reports running out of stack on absurd nesting as the engine's RangeError text. */
function yamlProblem(message: string): string {
  return /Maximum call stack size exceeded/.test(message) ? 'nested too deeply' : firstLine(message);
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** visor's own package folder (from sources or from dist/), so that plugins installed beside it are found too. */
function visorInstallDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
