import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, runVisor } from '../support/cli.js';

/**
 * The package runs from its bundle (scripts/bundle.mjs): the `visor` command and every entry point
 * a plugin imports. One module graph for all of them, so that a plugin and the CLI share one copy
 * of each module (one registry, one inversify) — a module found in two bundle files would be two
 * copies at run time.
 */
describe('the bundle (dist/bundle)', () => {
  const bundle = join(repoRoot, 'dist/bundle');
  const manifest = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
    bin: Record<string, string>;
    main: string;
    exports: Record<string, string | { default?: string }>;
  };
  const files = () => readdirSync(bundle).filter((f) => f.endsWith('.js'));

  it('is what the command and every entry point of the package load', () => {
    const targets = [
      manifest.bin['visor']!,
      manifest.main,
      ...Object.entries(manifest.exports)
        .filter(([key]) => key !== './package.json')
        .map(([, value]) => (typeof value === 'string' ? value : value.default!)),
    ];
    for (const target of targets) {
      expect(target.replace(/^\.\//, '')).toMatch(/^dist\/bundle\/[a-z-]+\.js$/);
      expect(existsSync(join(repoRoot, target)), target).toBe(true);
    }
  });

  it('holds each of its modules once, and leaves the peer dependencies to the user', () => {
    const seen = new Map<string, string>();
    for (const file of files()) {
      const map = join(bundle, `${file}.map`);
      if (!existsSync(map)) {
        // Only re-export facades and the bundler's helpers come without a map: no module inside.
        expect(readFileSync(join(bundle, file)).length, file).toBeLessThan(2048);
        continue;
      }
      for (const source of (JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] }).sources) {
        expect(seen.get(source), `${source} is in ${seen.get(source)} and ${file}`).toBeUndefined();
        seen.set(source, file);
      }
    }
    const modules = [...seen.keys()];
    expect(modules).toEqual(expect.arrayContaining(['../core/errors.js', '../core/registry/registry.js']));
    // The contract suites must run in the plugin author's own vitest, not a copy inside visor.
    expect(modules.filter((m) => /node_modules\/(vitest|@vitest|fast-check|chai)\//.test(m))).toEqual([]);
    expect(modules.some((m) => m.includes('node_modules/@inversifyjs/core/'))).toBe(true);
  });

  it('runs the command', () => {
    const result = runVisor(['--version']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(
      (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version,
    );
  });
});
