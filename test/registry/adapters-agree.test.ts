import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinPlugins } from '../../agent/builtins.js';
import { repoRoot } from '../support/cli.js';

/** One folder under adapters/ per built-in IaaS adapter, and no adapter without its folder. */
describe('adapters/ and the registry agree', () => {
  const folders = readdirSync(join(repoRoot, 'adapters'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const registered = builtinPlugins
    .filter((p) => p.kind === 'iaas')
    .map((p) => p.id)
    .sort();

  it('has exactly one registered adapter per folder', () => {
    expect(registered).toEqual(folders);
  });

  it('gives every adapter folder the standard files', () => {
    for (const folder of folders) {
      for (const file of ['index.ts', 'client.ts', 'mapper.ts', 'README.md']) {
        expect(existsSync(join(repoRoot, 'adapters', folder, file)), `adapters/${folder}/${file}`).toBe(true);
      }
    }
  });
});
