import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

/**
 * Rules of the source tree that keep the house extensible, checked on every file rather than
 * trusted to review:
 * - the floors: core imports neither adapters/ nor agent/; adapters do not import agent/;
 * - an adapter imports no other adapter's files: what two adapters share lives in core (the
 *   driver kit in core/iaas/kit, the wire code in core/wire);
 * - nothing outside a store implementation imports its internals (core/store/s3, file, http): S3
 *   wire code is in core/wire/s3 for the store and the adapters alike;
 * - every adapter folder (and the example adapter, core/iaas/memory) has the same files in the
 *   same roles, and any other file is a named helper of one role, documented in its README.
 */

const roles = ['driver', 'client', 'mapper', 'schema'] as const;
const required = ['index.ts', ...roles.map((r) => `${r}.ts`)];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(repoRoot, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.ts$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Every module a file imports or re-exports (static and dynamic), as repository paths for relative ones. */
function importsOf(file: string, text: string): string[] {
  const statement = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/.source;
  const bare = /(?:^|\n)\s*import\s*['"]([^'"]+)['"]/.source;
  const dynamic = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/.source;
  const pattern = new RegExp(`${statement}|${bare}|${dynamic}`, 'g');
  const specifiers = [...text.matchAll(pattern)].map((m) => m[1] ?? m[2] ?? m[3]!);
  return specifiers.map((s) =>
    s.startsWith('.') ? relative(repoRoot, resolve(repoRoot, dirname(file), s)).replace(/\.js$/, '.ts') : s,
  );
}

const adapterFolders = readdirSync(join(repoRoot, 'adapters'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => `adapters/${e.name}`);
const product = ['core', 'adapters', 'agent'].flatMap(sourceFiles).filter((f) => !f.endsWith('.test.ts'));
const imports = new Map(product.map((file) => [file, importsOf(file, readFileSync(join(repoRoot, file), 'utf8'))]));

describe('source rules', () => {
  it('reads imports of every form (so that the rules below cannot pass by missing them)', () => {
    const text = [
      "import { a } from './a.js';",
      "import type { B } from '../b/b.js';",
      'import {\n  c,\n  d,\n} from "../../core/c.js";',
      "export { e } from './e.js';",
      "export type { F } from '../f.js';",
      "const g = await import('./g.js');",
      "import 'node:fs';",
    ].join('\n');
    expect(importsOf('adapters/x/driver.ts', text)).toEqual([
      'adapters/x/a.ts',
      'adapters/b/b.ts',
      'core/c.ts',
      'adapters/x/e.ts',
      'adapters/f.ts',
      'adapters/x/g.ts',
      'node:fs',
    ]);
    expect(product.length).toBeGreaterThan(100);
    expect([...imports.values()].flat().length).toBeGreaterThan(500);
  });

  it('keeps the floors: core imports neither adapters nor agent, adapters do not import agent', () => {
    const breaches = [...imports].flatMap(([file, deps]) =>
      deps
        .filter(
          (d) =>
            (file.startsWith('core/') && /^(adapters|agent)\//.test(d)) ||
            (file.startsWith('adapters/') && d.startsWith('agent/')),
        )
        .map((d) => `${file} -> ${d}`),
    );
    expect(breaches).toEqual([]);
  });

  it("lets no adapter import another adapter's files", () => {
    const breaches = [...imports].flatMap(([file, deps]) => {
      const own = adapterFolders.find((f) => file.startsWith(`${f}/`));
      if (!own) return [];
      return deps.filter((d) => d.startsWith('adapters/') && !d.startsWith(`${own}/`)).map((d) => `${file} -> ${d}`);
    });
    expect(breaches).toEqual([]);
  });

  it('lets nothing outside a store implementation import its internals (S3 wire code is core/wire/s3)', () => {
    // A store's plugin entry (plugin.ts) is its public face; core/store/plugins.ts builds the built-in ones.
    const entry = (d: string) => /\/plugin\.ts$/.test(d);
    const breaches = [...imports].flatMap(([file, deps]) =>
      deps
        .filter((d) => /^core\/store\/(s3|file|http)\//.test(d) && !entry(d))
        .filter((d) => !file.startsWith(`${d.split('/').slice(0, 3).join('/')}/`) && file !== 'core/store/plugins.ts')
        .map((d) => `${file} -> ${d}`),
    );
    expect(breaches).toEqual([]);
  });

  for (const folder of [...adapterFolders, 'core/iaas/memory']) {
    it(`gives ${folder} the standard files, and names and documents every helper by its role`, () => {
      const files = readdirSync(join(repoRoot, folder)).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
      for (const file of required) expect(files, `${folder}/${file}`).toContain(file);
      const readme = readFileSync(join(repoRoot, folder, 'README.md'), 'utf8');
      for (const helper of files.filter((f) => !required.includes(f))) {
        expect(
          helper,
          `${folder}/${helper}: a helper is named <role>-<topic>.ts, role one of ${roles.join(', ')}`,
        ).toMatch(new RegExp(`^(${roles.join('|')})-[a-z0-9-]+\\.ts$`));
        expect(readme, `${folder}/README.md must say what ${helper} is for`).toContain(`\`${helper}\``);
      }
    });
  }
});
