import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commands } from '../../agent/cli/program.js';
import type { CliIo } from '../../agent/cli/io.js';
import { repoRoot } from '../support/cli.js';

const io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: {}, cwd: repoRoot };

/** The CLI's shape: one file per command under agent/cli/commands/, each defining that command only. */
describe('CLI command files', () => {
  it('has one file per top-level command, named after it, each defining exactly that command', async () => {
    const files = readdirSync(join(repoRoot, 'agent/cli/commands'))
      .filter((f) => f.endsWith('.ts'))
      .sort();
    const defined: string[] = [];
    for (const define of commands) {
      const program = new Command('visor');
      define(program, io);
      expect(program.commands).toHaveLength(1);
      defined.push(program.commands[0]!.name());
    }
    expect(defined.map((name) => `${name}.ts`).sort()).toEqual(files);
    // Every file's own export is the definition the program uses.
    for (const file of files) {
      const module = (await import(`../../agent/cli/commands/${file.replace(/\.ts$/, '.js')}`)) as Record<
        string,
        unknown
      >;
      const exported = Object.values(module).filter((v) => typeof v === 'function');
      expect(exported, file).toHaveLength(1);
      expect(commands, file).toContain(exported[0]);
    }
  });
});
