import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { importCycles, importEdges, sourceFiles } from './import-graph.js';

const files = sourceFiles(repoRoot, ['core', 'adapters', 'agent']);
const edges = importEdges(repoRoot, files);
const floor = (file: string) => file.split('/')[0]!;

describe('the import graph of core, adapters and agent', () => {
  it('sees the tree (a check that reads nothing would pass anything)', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(edges).toContainEqual({ from: 'agent/cli/program.ts', to: 'agent/cli/commands/serve.ts' });
    // Type-only and dynamic imports count too.
    expect(edges).toContainEqual({ from: 'agent/session.ts', to: 'agent/runtime/services.ts' });
    expect(edges).toContainEqual({ from: 'agent/cli/commands/sync.ts', to: 'agent/session.ts' });
  });

  it('has no import cycle, type-only and dynamic imports included', () => {
    expect(importCycles(edges)).toEqual([]);
  });

  it('finds a cycle where there is one', () => {
    const cyclic = [
      { from: 'a.ts', to: 'b.ts' },
      { from: 'b.ts', to: 'c.ts' },
      { from: 'c.ts', to: 'a.ts' },
      { from: 'c.ts', to: 'd.ts' },
      { from: 'e.ts', to: 'e.ts' },
    ];
    expect(importCycles(cyclic)).toEqual([['a.ts', 'b.ts', 'c.ts'], ['e.ts']]);
  });

  it('keeps the floors: core imports neither adapters nor agent, adapters do not import agent', () => {
    const upward = edges.filter(
      (e) =>
        (floor(e.from) === 'core' && floor(e.to) !== 'core') ||
        (floor(e.from) === 'adapters' && floor(e.to) === 'agent'),
    );
    expect(upward).toEqual([]);
  });

  it('resolves from the container only in the composition root (and the registry, for its own lookups)', () => {
    const allowed = new Set(['agent/runtime/open-runtime.ts', 'core/registry/registry.ts']);
    const resolving = files.filter(
      (f) => !allowed.has(f) && /\bcontainer\.get(Async|All|AllAsync)?\b/.test(readFileSync(join(repoRoot, f), 'utf8')),
    );
    expect(resolving).toEqual([]);
  });
});
