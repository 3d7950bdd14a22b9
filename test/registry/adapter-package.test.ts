import { execFileSync, spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, runVisor, stackLine } from '../support/cli.js';

const example = join(repoRoot, 'examples/visor-adapter-tinycloud');
const node = (script: string, args: string[], cwd: string) =>
  spawnSync(process.execPath, [join(repoRoot, 'node_modules', script), ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 240_000,
  });

interface VitestReport {
  success: boolean;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: { assertionResults: { ancestorTitles: string[]; title: string; status: string }[] }[];
}

/**
 * The example third-party adapter as its author would work on it: a TypeScript package beside
 * the repository, built with tsc against visor's public types, its own test running the
 * conformance suite exported as visor/testing on the adapter loaded by name through a config's
 * `plugins:`; then packed and installed into an application like any npm package.
 * Offline: the package's own dependencies are the repository's, linked (what `npm install`
 * of its devDependencies would give).
 */
describe('third-party adapter package (examples/visor-adapter-tinycloud)', () => {
  let dir: string;
  let pkg: string;
  let app: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-adapter-'));
    pkg = join(dir, 'visor-adapter-tinycloud');
    await cp(example, pkg, { recursive: true, filter: (source) => !/[/\\](node_modules|dist)$/.test(source) });
    await mkdir(join(pkg, 'node_modules', '@types'), { recursive: true });
    await symlink(repoRoot, join(pkg, 'node_modules', 'visor'), 'dir');
    await symlink(join(repoRoot, 'node_modules', 'vitest'), join(pkg, 'node_modules', 'vitest'), 'dir');
    await symlink(join(repoRoot, 'node_modules', '@types', 'node'), join(pkg, 'node_modules', '@types', 'node'), 'dir');
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds with tsc against the public visor types', () => {
    const build = node('typescript/bin/tsc', ['-p', 'tsconfig.json'], pkg);
    expect(build.stdout + build.stderr).toBe('');
    expect(build.status).toBe(0);
  }, 120_000);

  it('passes the exported IaaS conformance suite, loaded by name through plugins:, with nothing skipped', async () => {
    const output = join(dir, 'report.json');
    const run = node('vitest/vitest.mjs', ['run', '--root', pkg, '--reporter=json', `--outputFile=${output}`], pkg);
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(await readFile(output, 'utf8')) as VitestReport;
    const results = report.testResults.flatMap((file) => file.assertionResults);
    expect(results.length).toBeGreaterThanOrEqual(15);
    expect(
      results.every((r) => r.ancestorTitles[0] === 'IaaS driver conformance: tinycloud (example adapter package)'),
    ).toBe(true);
    expect(report).toMatchObject({ success: true, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0 });
    expect(report.numPassedTests).toBe(results.length);
    expect(results.map((r) => r.title)).toEqual(
      expect.arrayContaining(['follows every page when listing', 'reports refused credentials as auth']),
    );
  }, 240_000);

  it('installs from its tarball into an application, which lists and validates it', async () => {
    app = join(dir, 'app');
    await mkdir(app);
    execFileSync('npm', ['pack', pkg, '--pack-destination', dir, '--ignore-scripts'], { stdio: 'ignore' });
    const tarball = (await readdir(dir)).find((f) => f.startsWith('visor-adapter-tinycloud-') && f.endsWith('.tgz'));
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    const install = [
      'install',
      '--no-save',
      '--offline',
      '--no-audit',
      '--no-fund',
      '--legacy-peer-deps',
      '--ignore-scripts',
    ];
    execFileSync('npm', [...install, join(dir, tarball!)], { cwd: app, stdio: 'ignore' });
    await symlink(repoRoot, join(app, 'node_modules', 'visor'), 'dir');
    // What the tarball holds: the build and the README, not the sources or tests.
    const shipped = await readdir(join(app, 'node_modules', 'visor-adapter-tinycloud'));
    expect(shipped.sort()).toEqual(['README.md', 'dist', 'package.json']);

    const good =
      'plugins: [visor-adapter-tinycloud]\nclouds:\n' +
      '  demo: { adapter: tinycloud, options: { cloud: c, project: p, token: t } }\n';
    await writeFile(join(app, 'visor.yaml'), good);
    const listed = runVisor(['plugins', '--json', '-c', 'visor.yaml'], { cwd: app });
    expect(listed.code, listed.stderr).toBe(0);
    const plugins = JSON.parse(listed.stdout) as { id: string; kind: string; source: string }[];
    expect(plugins).toContainEqual(
      expect.objectContaining({ id: 'tinycloud', kind: 'iaas', source: 'visor-adapter-tinycloud@0.1.0' }),
    );

    const bad =
      'plugins: [visor-adapter-tinycloud]\nclouds:\n' +
      '  demo: { adapter: tinycloud, options: { cloud: c, pageSize: 0 } }\n';
    await writeFile(join(app, 'bad.yaml'), bad);
    const checked = runVisor(['config', 'validate', 'bad.yaml'], { cwd: app });
    expect(checked.code).toBe(2);
    expect(checked.stderr).toContain('clouds.demo.options.project: must be a non-empty string');
    expect(checked.stderr).toContain('clouds.demo.options.pageSize: must be a whole number from 1 to 1000');
    expect(checked.stderr).not.toMatch(stackLine);
  }, 120_000);
});
