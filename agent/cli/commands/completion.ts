import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { print, type CliIo } from '../io.js';

/** `visor completion bash|zsh|fish`: a completion script made from the commands as they are defined. */
export function completionCommand(program: Command, io: CliIo): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish)')
    .argument('<shell>', 'bash, zsh or fish')
    .action(async (shell: string) => {
      const { completionScript } = await import('../completion-script.js');
      if (shell !== 'bash' && shell !== 'zsh' && shell !== 'fish') {
        throw new VisorError('invalidInput', `completion: shells are bash, zsh and fish, not "${shell.slice(0, 20)}"`);
      }
      print(io, completionScript(program, shell));
    });
}
