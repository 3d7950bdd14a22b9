import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVisor, stackLine } from '../support/cli.js';

interface Case {
  kind: string;
  yaml: string;
  /** Text the one-line report must contain: the key path and what was expected. */
  expect: (string | RegExp)[];
  /** Line:column the report must point at, when the key is in the file. */
  at?: string;
}

const cases: Case[] = [
  { kind: 'bad YAML syntax', yaml: 'catalog:\n  type: [sqlite\n', expect: ['invalid YAML'], at: ':3:' },
  {
    kind: '${ENV} unquoted in a flow mapping',
    yaml: 'stores:\n  s: { type: file, options: { path: ${DIR} } }\n',
    expect: ['invalid YAML', 'put quotes around values with ${...}'],
    at: ':2:',
  },
  { kind: 'duplicate key', yaml: 'dataDir: /a\ndataDir: /b\n', expect: ['invalid YAML', /unique/i], at: ':2:1' },
  { kind: 'not a mapping', yaml: '- just\n- a list\n', expect: ['must be a mapping of settings'] },
  { kind: 'wrong type', yaml: 'server:\n  port: eighty\n', expect: ['server.port:', 'expected number'], at: ':2:3' },
  {
    kind: 'number out of range',
    yaml: 'server:\n  port: 70000\n',
    expect: ['server.port:', 'must be a TCP port'],
    at: ':2:3',
  },
  { kind: 'unknown top-level key', yaml: 'colour: red\n', expect: ['colour: unknown key'], at: ':1:1' },
  { kind: 'unknown nested key', yaml: 'server:\n  hots: 0.0.0.0\n', expect: ['server.hots: unknown key'], at: ':2:3' },
  {
    kind: 'missing required key',
    yaml: 'clouds:\n  prod:\n    options: {}\n',
    expect: ['clouds.prod.adapter:', 'is required'],
    at: ':2:3',
  },
  {
    kind: 'unknown adapter',
    yaml: 'clouds:\n  prod:\n    adapter: glanse\n',
    expect: ['clouds.prod.adapter: unknown adapter "glanse"'],
    at: ':3:5',
  },
  {
    kind: 'unknown store type',
    yaml: 'stores:\n  main:\n    type: ftp\n',
    expect: ['stores.main.type: unknown store type "ftp"', 'registered: file'],
    at: ':3:5',
  },
  {
    kind: 'unknown catalog type',
    yaml: 'catalog:\n  type: postgres\n',
    expect: ['catalog.type: unknown catalog type "postgres"', 'mongodb, postgresql, sqlite'],
    at: ':2:3',
  },
  {
    kind: 'bad enum value',
    yaml: 'logging:\n  level: loud\n',
    expect: ['logging.level:', '"error"|"warn"|"info"|"debug"'],
    at: ':2:3',
  },
  {
    kind: 'unset ${ENV}',
    yaml: 'dataDir: ${VISOR_TEST_SURELY_UNSET}\n',
    expect: ['dataDir: environment variable VISOR_TEST_SURELY_UNSET is not set'],
    at: ':1:1',
  },
  { kind: 'malformed ${', yaml: 'dataDir: /srv/${oops\n', expect: ['dataDir: unterminated "${"'], at: ':1:1' },
  {
    kind: 'invalid ${} name',
    yaml: 'dataDir: ${1BAD}\n',
    expect: ['dataDir: "${1BAD}" is not a valid environment variable reference'],
  },
  {
    kind: 'plugin option invalid',
    yaml: 'catalog:\n  type: mongodb\n  options:\n    uri: http://db\n',
    expect: ['catalog.options.uri: must be a mongodb:// or mongodb+srv:// URI'],
    at: ':4:5',
  },
  {
    kind: 'plugin option unknown',
    yaml: 'stores:\n  local:\n    type: file\n    options: { path: x, compress: true }\n',
    expect: ['stores.local.options.compress: unknown key'],
  },
  {
    kind: 'dangling reference',
    yaml: 'stores:\n  a: { type: file }\ndefaultStore: b\n',
    expect: ['defaultStore: names store "b", which is not under "stores"'],
    at: ':3:1',
  },
  {
    kind: 'ambiguous default',
    yaml: 'stores:\n  a: { type: file }\n  b: { type: file, options: { path: b } }\n',
    expect: ['defaultStore: is required when there are several stores'],
  },
  {
    kind: 'bad instance name',
    yaml: 'stores:\n  My Store: { type: file }\n',
    expect: ['stores.My Store: invalid name:', 'lower-case'],
  },
  {
    kind: 'missing plugin package',
    yaml: 'plugins: [visor-adapter-missing]\n',
    expect: ['plugins[0]: plugin package "visor-adapter-missing" is not installed'],
    at: ':1:11',
  },
  { kind: 'wrong version', yaml: 'version: 2\n', expect: ['version: must be 1'] },
];

describe('config mistakes: one clear report each (file, line, key path), exit 2, no stack trace', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(cases)('$kind', async ({ kind, yaml, expect: wanted, at }) => {
    const file = join(dir, `${kind.replace(/\W+/g, '-')}.yaml`);
    await writeFile(file, yaml);
    const result = runVisor(['config', 'validate', file]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).not.toMatch(stackLine);
    const name = file.split('/').pop()!;
    expect(result.stderr).toContain(name);
    if (at) expect(result.stderr).toContain(`${name}${at}`);
    for (const w of wanted) {
      if (typeof w === 'string') expect(result.stderr).toContain(w);
      else expect(result.stderr).toMatch(w);
    }
  });

  it('reports every problem of a file at once', async () => {
    const file = join(dir, 'many.yaml');
    await writeFile(
      file,
      'colour: red\nserver:\n  port: -1\nlogging:\n  level: loud\nclouds:\n  prod:\n    adapter: glanse\n',
    );
    const result = runVisor(['config', 'validate', file]);
    expect(result.code).toBe(2);
    // zod stops before plugin checks when the file's shape is wrong, but names all shape errors.
    expect(result.stderr).toContain('3 problems');
    for (const path of ['colour: unknown key', 'server.port:', 'logging.level:']) expect(result.stderr).toContain(path);
  });

  it('reports a missing file in one line', () => {
    const result = runVisor(['config', 'validate', join(dir, 'nope.yaml')]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('nope.yaml: no such file');
  });

  it('gives machine-readable problems with --json', async () => {
    const file = join(dir, 'json.yaml');
    await writeFile(file, 'server:\n  port: eighty\n');
    const result = runVisor(['config', 'validate', '--json', file]);
    expect(result.code).toBe(2);
    const report = JSON.parse(result.stdout) as { valid: boolean; issues: { path: string; line: number }[] };
    expect(report.valid).toBe(false);
    expect(report.issues[0]).toMatchObject({ path: 'server.port', line: 2 });
  });

  it('accepts a valid file, with ${ENV} and ${ENV:-default}, and exits 0', async () => {
    const file = join(dir, 'good.yaml');
    await writeFile(
      file,
      'dataDir: ${VISOR_TEST_DIR}\nserver:\n  host: ${VISOR_TEST_HOST:-127.0.0.1}\nstores:\n  local: ' +
        '{ type: file, options: { path: "$${literal}" } }\n',
    );
    const result = runVisor(['config', 'validate', '--json', file], { env: { VISOR_TEST_DIR: '/srv/visor' } });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      valid: true,
      catalog: 'sqlite',
      stores: ['local'],
      defaultStore: 'local',
    });
  });
});
