import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { version } from '../../agent/cli/version.js';
import { runVisorAsync } from '../support/cli.js';

/** Runs bash's completion function for the words typed so far (the cursor on the last word). */
function complete(script: string, words: readonly string[]): string[] {
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const call = `COMP_WORDS=(visor ${quoted}); COMP_CWORD=${words.length}; _visor`;
  const program = `${script}\n${call}; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const result = spawnSync('bash', ['--norc', '--noprofile', '-c', program], { encoding: 'utf8', cwd: dir });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout.split('\n').filter(Boolean);
}

let dir: string;
let bash: string;

describe('shell completion', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'visor-completion-'));
    await writeFile(join(dir, 'visor.yaml'), 'x: 1\n');
    const result = await runVisorAsync(['completion', 'bash']);
    expect(result.code, result.stderr).toBe(0);
    bash = result.stdout;
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('completes commands, subcommands and each command its own options, in bash', () => {
    expect(complete(bash, ['s'])).toEqual(['serve', 'sync', 'status', 'shares', 'sources', 'subscribe']);
    expect(complete(bash, ['sy'])).toEqual(['sync']);
    expect(complete(bash, ['catalog', ''])).toEqual(expect.arrayContaining(['migrate', 'copy']));
    expect(complete(bash, ['delete', '--j'])).toEqual(['--json']);
    expect(complete(bash, ['catalog', 'migrate', '--c'])).toEqual(['--config']);
    expect(complete(bash, ['sync', '-c', 'vis'])).toEqual(['visor.yaml']);
    expect(complete(bash, ['completion', '--he'])).toEqual(['--help']);
  });

  it('prints zsh (through bashcompinit) and fish scripts, and refuses other shells', async () => {
    const zsh = await runVisorAsync(['completion', 'zsh']);
    expect(zsh.stdout).toMatch(/^#compdef visor/);
    expect(zsh.stdout).toContain('bashcompinit');
    const fish = await runVisorAsync(['completion', 'fish']);
    expect(fish.stdout).toContain("complete -c visor -n '__fish_use_subcommand' -a 'serve agent");
    const bad = await runVisorAsync(['completion', 'tcsh']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bash, zsh and fish/);
  });
});

describe('help and version', () => {
  it('visor -v prints the version, as VISOR did (and -V, --version still do)', async () => {
    for (const flag of ['-v', '-V', '--version']) {
      const result = await runVisorAsync([flag]);
      expect(result.code, flag).toBe(0);
      expect(result.stdout.trim()).toBe(version);
    }
  });

  it('--help shows an example and the environment each command reads', async () => {
    for (const [command, example, variable] of [
      ['add', '$ visor add name=', 'VISOR_ACCESS_KEY'],
      ['sync', '$ visor sync -c', 'VISOR_CONFIG'],
      ['completion', '$ source <(visor completion bash)', undefined],
    ] as const) {
      const help = await runVisorAsync([command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('Examples:');
      expect(help.stdout).toContain(example);
      if (variable) expect(help.stdout).toMatch(new RegExp(`Environment: .*${variable}`));
    }
  });
});
