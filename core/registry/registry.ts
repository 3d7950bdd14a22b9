import 'reflect-metadata';
import { Container } from 'inversify';
import { VisorError } from '../errors.js';
import { ZodType } from 'zod';
import { formatPath, zodIssues } from '../validation.js';
import type { FieldIssue } from '../errors.js';
import { factoryIdByKind, type PluginFactory, type PluginKind } from './ids.js';
import { pluginShape, type VisorPlugin } from './plugin.js';

export interface PluginSource {
  /** `builtin`, the npm package the plugin came from, or `embedded` (given by the application embedding visor). */
  type: 'builtin' | 'package' | 'embedded';
  package?: string;
  version?: string;
  path?: string;
}

export interface RegisteredPlugin {
  plugin: VisorPlugin;
  source: PluginSource;
}

export interface PluginInfo {
  id: string;
  kind: PluginKind;
  description: string;
  source: string;
}

/**
 * The plugin registry: one inversify container into which every plugin's module is loaded,
 * and the record of which plugin came from where.
 */
export class PluginRegistry {
  readonly container: Container;
  readonly #plugins = new Map<string, RegisteredPlugin>();

  constructor(container: Container = new Container({ defaultScope: 'Singleton' })) {
    this.container = container;
  }

  register(candidate: unknown, source: PluginSource = { type: 'builtin' }): VisorPlugin {
    const origin =
      source.type === 'package'
        ? `plugin package "${source.package}"`
        : `${source.type === 'builtin' ? 'built-in' : 'embedded'} plugin`;
    const shape = pluginShape.safeParse(candidate);
    if (!shape.success) {
      const problems = shape.error.issues.map((i) => `${formatPath(i.path) || 'plugin'} ${i.message}`).join('; ');
      throw new VisorError('plugin', `${origin} exports an invalid plugin: ${problems}`, { details: { source } });
    }
    const plugin = candidate as VisorPlugin;
    const key = `${plugin.kind}:${plugin.id}`;
    const existing = this.#plugins.get(key);
    if (existing) {
      throw new VisorError(
        'plugin',
        `${origin} registers ${plugin.kind} plugin "${plugin.id}", ` +
          `which ${describeSource(existing.source)} already registered`,
        {
          details: { source },
        },
      );
    }
    try {
      this.container.load(plugin.module);
    } catch (error) {
      throw new VisorError(
        'plugin',
        `${origin}: loading the module of "${plugin.id}" failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (!this.container.isBound(factoryIdByKind[plugin.kind], { name: plugin.id })) {
      throw new VisorError(
        'plugin',
        `${origin}: plugin "${plugin.id}" did not bind a ${plugin.kind} factory named "${plugin.id}"`,
        { details: { source } },
      );
    }
    this.#plugins.set(key, { plugin, source });
    return plugin;
  }

  get(kind: PluginKind, id: string): RegisteredPlugin | undefined {
    return this.#plugins.get(`${kind}:${id}`);
  }

  ids(kind: PluginKind): string[] {
    return [...this.#plugins.values()]
      .filter((p) => p.plugin.kind === kind)
      .map((p) => p.plugin.id)
      .sort();
  }

  list(): PluginInfo[] {
    return [...this.#plugins.values()]
      .map(({ plugin, source }) => ({
        id: plugin.id,
        kind: plugin.kind,
        description: plugin.description ?? '',
        source: describeSource(source),
      }))
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
  }

  /** Loads every registered plugin's module into a runtime's container (each runtime has its own). */
  bindInto(container: Container): void {
    for (const { plugin } of this.#plugins.values()) container.load(plugin.module);
  }

  /**
   * The factory a plugin bound, resolved in the registry's own container: for tools and tests
   * that build one plugin's product by hand. visor itself builds everything in its runtime.
   */
  factory(kind: PluginKind, id: string): PluginFactory<unknown> {
    if (!this.get(kind, id))
      throw new VisorError(
        'plugin',
        `no ${kind} plugin "${id}" is registered (known: ${this.ids(kind).join(', ') || 'none'})`,
      );
    return this.container.get(factoryIdByKind[kind], { name: id });
  }

  /** Validates options against the plugin's own schema; issues are reported at `path`. */
  async validateOptions(
    kind: PluginKind,
    id: string,
    options: unknown,
    path: readonly PropertyKey[],
  ): Promise<{ value?: unknown; issues: FieldIssue[] }> {
    const registered = this.get(kind, id);
    if (!registered) return { issues: [{ path: formatPath(path), message: `no ${kind} plugin "${id}"` }] };
    const schema = registered.plugin.optionsSchema;
    // zod schemas (ours, and many plugins') give better messages through zod's own issues.
    if (schema instanceof ZodType) {
      const parsed = await schema.safeParseAsync(options ?? {});
      return parsed.success ? { value: parsed.data, issues: [] } : { issues: zodIssues(parsed.error, path) };
    }
    const result = await schema['~standard'].validate(options ?? {});
    if (!result.issues) return { value: result.value, issues: [] };
    return {
      issues: result.issues.map((issue) => ({
        path: formatPath([...path, ...(issue.path ?? []).map((p) => (typeof p === 'object' ? p.key : p))]),
        message: issue.message,
      })),
    };
  }
}

export function describeSource(source: PluginSource): string {
  if (source.type !== 'package') return source.type;
  return `${source.package}${source.version ? `@${source.version}` : ''}`;
}
