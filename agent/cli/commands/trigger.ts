import type { Command } from 'commander';
import type { RunRecord } from '../../../core/catalog/port.js';
import { print, printJson, type CliIo } from '../io.js';
import { exitCodeOf } from '../sync-output.js';

export function triggerCommand(program: Command, io: CliIo): void {
  program
    .command('trigger')
    .description('ask a running agent to sync a cloud now (admin keys)')
    .argument('<cloud>')
    .option('--url <url>', 'agent URL (default: $VISOR_URL or http://127.0.0.1:4568)')
    .option('--wait', 'wait for the run to finish and print it')
    .option('--json', 'print JSON')
    .action(async (target: string, flags: { url?: string; wait?: boolean; json?: boolean }) => {
      const { VisorClient } = await import('../../client/client.js');
      const { loadClientSettings } = await import('../../client/credentials.js');
      const client = new VisorClient(loadClientSettings(io.env, { url: flags.url }));
      const path = `/targets/${encodeURIComponent(target)}/sync${flags.wait ? '?wait=true' : ''}`;
      const result = await client.postJson(path);
      if (flags.json) printJson(io, result);
      else if (flags.wait) {
        const run = (result as { run: RunRecord }).run;
        print(io, `[${run.target}] ${run.status}${run.error ? `: ${run.error}` : ''}`);
        process.exitCode = exitCodeOf([run.status]);
      } else print(io, `Sync of ${target} started; see \`visor status\`.`);
    });
}
