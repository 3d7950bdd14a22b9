import type { Command } from 'commander';
import type { RunRecord } from '../../../core/catalog/port.js';
import { VisorError } from '../../../core/errors.js';
import { print, printJson, type CliIo } from '../io.js';
import { exitCodeOf } from '../sync-output.js';

interface Flags {
  url?: string;
  wait?: boolean;
  json?: boolean;
  failed?: boolean;
  image?: string;
}

export function triggerCommand(program: Command, io: CliIo): void {
  program
    .command('trigger')
    .description('ask a running agent to sync a cloud now (admin keys)')
    .argument('<cloud>')
    .option('--url <url>', 'agent URL (default: $VISOR_URL or http://127.0.0.1:4568)')
    .option('--failed', 'retry only what failed in the last run (a run limited to those images)')
    .option('--image <id>', 'with --failed: only this image')
    .option('--wait', 'wait for the run to finish and print it')
    .option('--json', 'print JSON')
    .action(async (target: string, flags: Flags) => {
      if (flags.image !== undefined && !flags.failed) {
        throw new VisorError('invalidInput', '--image goes with --failed (a full sync takes every image)');
      }
      const { VisorClient } = await import('../../client/client.js');
      const { loadClientSettings } = await import('../../client/credentials.js');
      const client = new VisorClient(loadClientSettings(io.env, { url: flags.url }));
      const query = new URLSearchParams();
      if (flags.image !== undefined) query.set('image', flags.image);
      if (flags.wait) query.set('wait', 'true');
      const verb = flags.failed ? 'retry-failed' : 'sync';
      const path = `/targets/${encodeURIComponent(target)}/${verb}${query.size ? `?${query}` : ''}`;
      const result = await client.postJson(path);
      if (flags.json) printJson(io, result);
      else if (flags.wait) {
        const run = (result as { run: RunRecord }).run;
        print(io, `[${run.target}] ${run.status}${run.error ? `: ${run.error}` : ''}`);
        process.exitCode = exitCodeOf([run.status]);
      } else if (flags.failed) {
        const images = (result as { images: string[] }).images;
        print(io, `Retry of ${images.length} failed image(s) in ${target} started; see \`visor status\`.`);
      } else print(io, `Sync of ${target} started; see \`visor status\`.`);
    });
}
