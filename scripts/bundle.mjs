// Bundles the compiled program (dist/, tsc's output) into a few files under dist/bundle/, which
// the `visor` command and the package's entry points load. Why: Node's ES-module loader costs
// ~0.5 ms per module, and the CLI loaded ~565 of them (inversify alone ~240) — half a second of
// every `visor sync`, `add` and `get` (BENCHMARKS.md, A sync that moves nothing). Bundled, the
// same code loads in a few dozen files.
//
// Every entry point of the package (the CLI, `visor`, `visor/runtime`, `visor/testing`) is an
// input of ONE build, so they share their chunks: a plugin that imports `visor` gets the very
// modules the CLI runs (one registry, one inversify), not a second copy.
//
// Left outside (loaded from node_modules as before): the peer dependencies (vitest, fast-check: the
// contract suites must run in the user's own test runner), native addons, and the heavy packages
// that only some commands import, on demand (the AWS SDK, MongoDB, PostgreSQL, Fastify and its
// plugins) — bundling them would only make the bundle bigger.
import { cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const out = `${dist}bundle`;
const onDemand = [/^@aws-sdk\//, /^@smithy\//, /^mongodb$/, /^pg$/, /^pg-/, /^fastify$/, /^@fastify\//];
const native = [/^better-sqlite3$/];
const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const peers = Object.keys(manifest.peerDependencies ?? {});
const isPeer = (id) => peers.some((name) => id === name || id.startsWith(`${name}/`));
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

rmSync(out, { recursive: true, force: true });
await build({
  input: {
    cli: `${dist}agent/cli/main.js`,
    index: `${dist}core/index.js`,
    runtime: `${dist}agent/runtime/index.js`,
    testing: `${dist}core/testing/index.js`,
    'testing-catalog': `${dist}core/testing/catalog.js`,
  },
  platform: 'node',
  external: (id) => builtins.has(id) || isPeer(id) || [...onDemand, ...native].some((pattern) => pattern.test(id)),
  logLevel: 'warn',
  output: {
    dir: out,
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: '[name]-[hash].js',
    sourcemap: true,
  },
});
// The dashboard's files are read beside the code that serves them (agent/ui/routes.ts), which now
// sits in this folder.
mkdirSync(`${out}/assets`, { recursive: true });
cpSync(`${dist}agent/ui/assets/`, `${out}/assets/`, { recursive: true });
