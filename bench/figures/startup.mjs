// What a `visor sync` costs before it moves a byte: a sync with nothing to do (process start,
// config, drivers, Keystone token, listing, plan, exit), and what the heaviest packages it loads
// cost on their own in a fresh process.
import { execFileSync } from 'node:child_process';
import { median, runMeasured } from '../lib/util.mjs';

// CommonJS packages only: their files show in require.cache, so whether the sync command loads them can be read back.
const heavy = ['@aws-sdk/client-ec2', '@aws-sdk/client-s3', 'mongodb', 'fastify', 'better-sqlite3'];

/** Which of `heavy` a process that imports the sync command's modules has loaded, and each one's own import cost. */
function packageCosts(kit, cwd) {
  const script =
    `
    import { createRequire } from 'node:module';
    const require = createRequire(${JSON.stringify(`${kit.dist}/agent/session.js`)});
    await import(${JSON.stringify(`${kit.dist}/agent/session.js`)});
    await import(${JSON.stringify(`${kit.dist}/agent/sync/runner.js`)});
    const loaded = Object.keys(require.cache);
    console.log(JSON.stringify(${JSON.stringify(heavy)}.filter((p) ` +
    `=> loaded.some((f) => f.includes('/node_modules/' + p + '/')))));
  `;
  const loadedBySync = JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd, encoding: 'utf8' })
      .trim()
      .split('\n')
      .pop(),
  );
  const costs = heavy.map((name) => {
    const probe =
      `const rss0 = process.memoryUsage().rss; const t = performance.now(); ` +
      `await import(${JSON.stringify(name)}); console.log(JSON.stringify({ ms: ` +
      `performance.now() - t, rssMiB: (process.memoryUsage().rss - rss0) / 1048576 }));`;
    const runs = [0, 1, 2].map(() =>
      JSON.parse(
        execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd, encoding: 'utf8' }).trim(),
      ),
    );
    return {
      name,
      ms: median(runs.map((r) => r.ms)),
      rssMiB: median(runs.map((r) => r.rssMiB)),
      loadedBySync: loadedBySync.includes(name),
    };
  });
  return costs;
}

export async function startupFigures({ kit, config, repoRoot, repeat = 3 }) {
  const noop = [];
  for (let i = 0; i < repeat; i++) {
    const r = await runMeasured(process.execPath, [kit.bin, 'sync', '-c', config, '--json']);
    const run = JSON.parse(r.stdout).runs[0];
    if (run.status !== 'succeeded' || run.actions.length !== 0)
      throw new Error(`the no-op sync did something: ${JSON.stringify(run).slice(0, 500)}`);
    noop.push({
      seconds: r.seconds,
      peakRssMiB: r.peakRssMiB,
      runSeconds: (Date.parse(run.finishedAt) - Date.parse(run.startedAt)) / 1000,
    });
  }
  const version = await runMeasured(process.execPath, [kit.bin, '--version']);
  const bare = await runMeasured(process.execPath, ['-e', '0']);
  return {
    noopSync: {
      seconds: median(noop.map((n) => n.seconds)),
      peakRssMiB: median(noop.map((n) => n.peakRssMiB)),
      runSeconds: median(noop.map((n) => n.runSeconds)),
    },
    version: { seconds: version.seconds, peakRssMiB: version.peakRssMiB },
    bareNode: { seconds: bare.seconds, peakRssMiB: bare.peakRssMiB },
    packages: packageCosts(kit, repoRoot),
  };
}
