import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime } from '../../agent/runtime/open-runtime.js';
import { silentLogger } from '../../core/logging/logger.js';
import { repoRoot, runVisor, stackLine } from '../support/cli.js';

/**
 * The example third-party plugin, packed and installed as a separate npm package into an
 * application folder, then loaded by name from that application's config.
 */
describe('third-party plugin package (examples/visor-store-memory)', () => {
  let dir: string;
  let app: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-plugin-'));
    app = join(dir, 'app');
    await mkdir(app);
    execFileSync('npm', ['pack', join(repoRoot, 'examples/visor-store-memory'), '--pack-destination', dir], {
      stdio: 'ignore',
    });
    const tarball = (await readdir(dir)).find((f) => f.endsWith('.tgz'));
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    // --offline: the tarball has no dependencies, so this never needs the network.
    execFileSync(
      'npm',
      [
        'install',
        '--no-save',
        '--offline',
        '--no-audit',
        '--no-fund',
        '--legacy-peer-deps',
        '--ignore-scripts',
        join(dir, tarball!),
      ],
      { cwd: app, stdio: 'ignore' },
    );
    // What `npm install visor` would put there: the host package the plugin peers with.
    await symlink(repoRoot, join(app, 'node_modules', 'visor'), 'dir');
    await writeFile(
      join(app, 'visor.yaml'),
      'plugins: [visor-store-memory]\nstores:\n  mem: { type: memory, options: { maxBytes: 1000 } }\n',
    );
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is listed by `visor plugins` with its package as the source', () => {
    const result = runVisor(['plugins', '--json', '-c', 'visor.yaml'], { cwd: app });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const plugins = JSON.parse(result.stdout) as { id: string; kind: string; source: string }[];
    expect(plugins).toContainEqual(
      expect.objectContaining({ id: 'memory', kind: 'store', source: 'visor-store-memory@0.1.0' }),
    );
    expect(plugins).toContainEqual(expect.objectContaining({ id: 'sqlite', kind: 'catalog', source: 'builtin' }));
  });

  it('provides a working store to the composed application', async () => {
    const options = { configFile: join(app, 'visor.yaml'), env: { HOME: dir }, logger: silentLogger };
    const runtime = await openRuntime(options);
    try {
      const stores = await runtime.stores();
      const store = stores.get('mem')!;
      const put = await store.put('abc', Readable.from([Buffer.from('hello')]));
      expect(put.size).toBe(5);
      expect(put.checksums.md5).toBe('5d41402abc4b2a76b9719d911017c592');
      expect(await text((await store.get(put.uri)).stream)).toBe('hello');
      await expect(store.put('big', Readable.from([Buffer.alloc(2000)]))).rejects.toMatchObject({
        kind: 'unavailable',
      });
    } finally {
      await runtime.close();
    }
  });

  it("validates the plugin's options with the plugin's own schema", async () => {
    await writeFile(
      join(app, 'bad-options.yaml'),
      'plugins: [visor-store-memory]\nstores:\n  mem: { type: memory, options: { maxBytes: -5, colour: red } }\n',
    );
    const result = runVisor(['config', 'validate', 'bad-options.yaml'], { cwd: app });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('bad-options.yaml:3:');
    expect(result.stderr).toContain('stores.mem.options.maxBytes: must be a positive whole number of bytes');
    expect(result.stderr).toContain('stores.mem.options.colour: unknown key');
    expect(result.stderr).not.toMatch(stackLine);
  });

  it('stops start-up with a clear error when a named package is missing', async () => {
    await writeFile(join(app, 'missing.yaml'), 'plugins: [visor-adapter-nowhere]\n');
    const result = runVisor(['plugins', '-c', 'missing.yaml'], { cwd: app });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('plugin package "visor-adapter-nowhere" is not installed');
    expect(result.stderr).toContain('npm install visor-adapter-nowhere');
    expect(result.stderr).not.toMatch(stackLine);
  });

  it('stops start-up when a package exports something that is not a plugin', async () => {
    const fake = join(app, 'node_modules', 'visor-not-a-plugin');
    await mkdir(fake, { recursive: true });
    await writeFile(
      join(fake, 'package.json'),
      JSON.stringify({ name: 'visor-not-a-plugin', version: '1.0.0', type: 'module', main: 'index.js' }),
    );
    await writeFile(join(fake, 'index.js'), "export default { id: 'Bad Id', kind: 'teleporter' };\n");
    await writeFile(join(app, 'invalid.yaml'), 'plugins: [visor-not-a-plugin]\n');
    const result = runVisor(['plugins', '-c', 'invalid.yaml'], { cwd: app });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('plugin package "visor-not-a-plugin" exports an invalid plugin');
    expect(result.stderr).toMatch(/id must be lower-case/);
    expect(result.stderr).toMatch(/kind/);
    expect(result.stderr).toMatch(/optionsSchema must be a Standard Schema/);
    expect(result.stderr).not.toMatch(stackLine);
  });
});
