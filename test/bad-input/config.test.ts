import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, stackLine, visorBin, type CliResult } from '../support/cli.js';

/**
 * Hostile config files (beyond test/config's everyday mistakes): YAML bombs, absurd nesting,
 * huge and binary files, YAML tags that build other types, prototype keys, environment values
 * that look like YAML. Each must end in exit 2 with one clear report and no stack trace, in
 * `visor config validate` and at `visor serve` / `visor agent` start-up (which never listen).
 */
const lol = [
  'a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
  ...'bcdefghi'.split('').map((c, i) => `${c}: &${c} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(', ')}]`),
].join('\n');
const mergeBomb =
  'a: &a {k: v}\nb: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a]}\nc: &c {<<: [*b, ' +
  '*b, *b, *b, *b, *b, *b, *b]}\nd: {<<: [*c, *c, *c, *c, *c, *c, *c, *c]}\n';

interface Case {
  kind: string;
  content: string | Buffer;
  expect: RegExp[];
}

const cases: Case[] = [
  { kind: 'billion laughs (aliases)', content: lol, expect: [/invalid YAML: .*alias/i] },
  { kind: 'a YAML bomb of merge keys', content: mergeBomb, expect: [/invalid YAML: .*alias/i] },
  {
    kind: 'deeply nested flow sequences',
    content: `server: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
    expect: [/invalid YAML: nested too deeply/],
  },
  {
    kind: 'deeply nested flow mappings',
    content: `server: ${'{a: '.repeat(50_000)}1${'}'.repeat(50_000)}\n`,
    expect: [/invalid YAML: nested too deeply/],
  },
  {
    kind: 'nesting that parses but means nothing',
    content: `server: ${'{a: '.repeat(300)}1${'}'.repeat(300)}\n`,
    expect: [/server\.a: unknown key/],
  },
  {
    kind: 'a huge file (2 MiB of comments)',
    content: `# ${'x'.repeat(2 * 1024 * 1024)}\ndataDir: /srv\n`,
    expect: [/is 2097\d+ bytes; a config file is at most 1048576 bytes/],
  },
  { kind: 'binary garbage', content: randomBytes(64 * 1024), expect: [/is not (a text file|valid UTF-8 text)/] },
  {
    kind: 'a NUL byte in a value',
    content: Buffer.from('dataDir: /srv\u0000/evil\n'),
    expect: [/not a text file \(a NUL byte at offset 13\)/],
  },
  {
    kind: 'invalid UTF-8 (latin1 bytes)',
    content: Buffer.from('dataDir: /srv/caf\xe9\n', 'latin1'),
    expect: [/not valid UTF-8 text/],
  },
  {
    kind: 'a !!set that would make a JS Set',
    content: 'server: !!set {port, host}\n',
    expect: [/Unresolved tag: tag:yaml\.org,2002:set \(a visor config uses no YAML tags\)/],
  },
  {
    kind: 'a !!js/function tag',
    content: 'dataDir: !!js/function "function () { process.exit(0) }"\n',
    expect: [/Unresolved tag: tag:yaml\.org,2002:js\/function/],
  },
  {
    kind: 'a !!binary value',
    content: 'dataDir: !!binary L3NydgA=\n',
    expect: [/Unresolved tag: tag:yaml\.org,2002:binary/],
  },
  {
    kind: 'several documents',
    content: 'dataDir: /a\n---\ndataDir: /b\n',
    expect: [/invalid YAML: Source contains multiple documents/],
  },
  {
    kind: 'prototype keys',
    content: '__proto__: {admin: true}\nserver: {constructor: {prototype: {polluted: 1}}}\n',
    expect: [/__proto__: unknown key/, /server\.constructor: unknown key/],
  },
  { kind: 'a 100 KiB key', content: `${'k'.repeat(100 * 1024)}: 1\n`, expect: [/invalid YAML|unknown key/] },
];

interface Run extends CliResult {
  timedOut: boolean;
}

/**
 * The built CLI, killed (its own pid) if it is still running after `ms`: a bad config must never get as far as serving.
 */
function visor(args: string[], env: Record<string, string>, ms = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [visorBin, ...args], {
      cwd: repoRoot,
      env: { PATH: process.env['PATH'], ...env },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, ms);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** Runs `jobs` with at most `width` at once (the machine has 2 cores shared with others). */
async function limited<T>(jobs: (() => Promise<T>)[], width = 3): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

describe('hostile config files: exit 2, one clear report, no stack trace, nothing started', () => {
  let dir: string;
  let env: Record<string, string>;
  const fileOf = (c: Case) => join(dir, `${c.kind.replace(/\W+/g, '-')}.yaml`);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-bad-config-'));
    env = { HOME: dir, VISOR_DATA_DIR: join(dir, 'data') };
    for (const c of cases) await writeFile(fileOf(c), c.content);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const expectRefused = (r: Run, c: Case, what: string) => {
    expect(r.timedOut, `${what} ${c.kind}: still running`).toBe(false);
    expect(r.code, `${what} ${c.kind}: ${r.stderr}`).toBe(2);
    expect(r.stderr).not.toMatch(stackLine);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.stdout).not.toMatch(/listening/);
    // One report: the file named on its first line, at most a handful of lines, none of them huge.
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toContain('.yaml');
    expect(lines.length).toBeLessThanOrEqual(4);
    for (const line of lines) expect(line.length).toBeLessThan(400);
    for (const wanted of c.expect) expect(r.stderr).toMatch(wanted);
  };

  it('visor config validate refuses each', async () => {
    const results = await limited(cases.map((c) => () => visor(['config', 'validate', fileOf(c)], env)));
    for (const [i, c] of cases.entries()) expectRefused(results[i]!, c, 'config validate');
  }, 300_000);

  it('visor serve and visor agent refuse to start on them', async () => {
    const picked = cases.filter((c) =>
      /laughs|merge|nested flow sequences|binary garbage|huge|!!set|prototype/.test(c.kind),
    );
    const jobs = picked.flatMap((c) =>
      ['serve', 'agent'].map((cmd) => () => visor([cmd, '-c', fileOf(c), '--port', '0'], env)),
    );
    const results = await limited(jobs);
    picked.forEach((c, i) => {
      expectRefused(results[2 * i]!, c, 'serve');
      expectRefused(results[2 * i + 1]!, c, 'agent');
    });
  }, 300_000);

  it(
    'takes ${ENV} values as text: YAML-looking values ' + 'never become structure, and are not expanded again',
    async () => {
      const file = join(dir, 'env.yaml');
      await writeFile(
        file,
        'dataDir: ${EVIL_DIR}\nserver:\n  host: "${EVIL_HOST}"\nstores:\n  local: ' +
          '{ type: file, options: { path: "${EVIL_PATH}" } }\n',
      );
      const evil = {
        EVIL_DIR: '/srv\nserver: {port: 1, auth: {enabled: false}}',
        EVIL_HOST: '*alias',
        EVIL_PATH: '&anchor [1, {a: 2}] ${HOME} <<: *a',
      };
      // (No VISOR_DATA_DIR here: it would win over the file's dataDir.)
      const shown = await visor(['config', 'show', '-c', file], { HOME: dir, ...evil });
      expect(shown.code, shown.stderr).toBe(0);
      const config = JSON.parse(shown.stdout) as {
        dataDir: string;
        server: { host: string; port: number; auth: { enabled: boolean } };
        stores: { local: { options: { path: string } } };
      };
      expect(config.dataDir).toBe(evil.EVIL_DIR);
      expect(config.server).toMatchObject({ host: '*alias', port: 4568, auth: { enabled: true } });
      expect(config.stores.local.options.path).toBe(evil.EVIL_PATH);
    },
  );

  it('says what is wrong when an ${ENV} value is not what a number field takes', async () => {
    const file = join(dir, 'env-number.yaml');
    await writeFile(file, 'server:\n  port: ${EVIL_PORT}\n');
    const r = await visor(['config', 'validate', file], { ...env, EVIL_PORT: '{a: 1}' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/env-number\.yaml:2:3: server\.port: .*expected number/);
    expect(r.stderr).not.toMatch(stackLine);
  });
});
