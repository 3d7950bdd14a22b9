import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type IaasDriver, silentLogger } from 'visor';
import { openRuntime, type Runtime } from 'visor/runtime';
import { iaasConformance } from 'visor/testing';
import { tinyCloud } from '../src/cloud.js';

/**
 * visor's IaaS conformance suite (exported as visor/testing) against this adapter, loaded the
 * way visor loads it: by its package name, from the `plugins:` of a config file, out of the
 * node_modules of the application folder. Run `npm run build` first: visor loads dist/.
 */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const cloud = `conformance-${process.pid}`;
const runtimes: Runtime[] = [];
let app: string | undefined;

/** An application folder with this package installed (linked) where visor looks for plugins. */
async function application(): Promise<string> {
  if (app) return app;
  const dir = await mkdtemp(join(tmpdir(), 'visor-adapter-tinycloud-'));
  await mkdir(join(dir, 'node_modules'));
  await symlink(packageRoot, join(dir, 'node_modules', 'visor-adapter-tinycloud'), 'dir');
  app = dir;
  return dir;
}

/** A driver for `project` built by visor from a config naming the adapter and this cloud. */
async function driver(project: string, token: string, pageSize = 100): Promise<IaasDriver> {
  const dir = await application();
  const file = join(dir, `${project}-${token}-${pageSize}.yaml`);
  await writeFile(
    file,
    [
      `dataDir: ${join(dir, 'data')}`,
      'plugins: [visor-adapter-tinycloud]',
      'clouds:',
      '  demo:',
      '    adapter: tinycloud',
      `    options: { cloud: ${cloud}, project: ${project}, token: ${token}, pageSize: ${pageSize} }`,
      '',
    ].join('\n'),
  );
  const runtime = await openRuntime({ configFile: file, env: {}, logger: silentLogger });
  runtimes.push(runtime);
  const built = await runtime.targets();
  const target = built.targets.get('demo');
  if (!target) throw built.failed.get('demo') ?? new Error('the demo cloud was not built');
  return target.driver;
}

iaasConformance('tinycloud (example adapter package)', async () => {
  // The first caller of a project sets its token.
  await driver('alpha', 'alpha-token');
  await driver('beta', 'beta-token');
  return {
    driver: () => driver('alpha', 'alpha-token'),
    pagedDriver: (pageSize) => driver('alpha', 'alpha-token', pageSize),
    badCredentialsDriver: () => driver('alpha', 'not-the-token'),
    otherOwnerDriver: () => driver('beta', 'beta-token'),
    createUnmarked: async (name) => {
      const record = tinyCloud(cloud).create('alpha', {
        name,
        visibility: 'private',
        diskFormat: 'raw',
        containerFormat: 'bare',
        attributes: {},
      });
      tinyCloud(cloud).upload('alpha', record.id, Buffer.from("made behind visor's back"));
      return record.id;
    },
    cleanup: async () => {
      for (const runtime of runtimes.splice(0)) await runtime.close();
      if (app) await rm(app, { recursive: true, force: true });
    },
  };
});
