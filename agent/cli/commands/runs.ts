import type { Command } from 'commander';
import type { ActionRecord } from '../../../core/catalog/port.js';
import type { RunSummary } from '../../api/run-view.js';
import { clientFor, type ClientOptions, withClientOptions } from '../client-options.js';
import { humanSize } from '../format.js';
import { print, printJson, table, type CliIo } from '../io.js';

interface RunsOptions extends ClientOptions {
  target?: string;
  limit?: string;
}

const counted = (counts: Record<string, number>) =>
  Object.entries(counts)
    .map(([result, n]) => `${n} ${result}`)
    .join(', ');

const logLine = (line: NonNullable<ActionRecord['log']>[number]) => {
  const fields = Object.entries(line.fields ?? {}).map(([k, v]) => `${k}=${v}`);
  return `  ${line.at} ${line.level} ${line.message}${fields.length ? ` ${fields.join(' ')}` : ''}`;
};

const seconds = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)}s`);

export function runsCommand(program: Command, io: CliIo): void {
  withClientOptions(
    program
      .command('runs')
      .argument('[run]', "one run's id: its tasks and their outcome")
      .description('recent sync runs (newest first): status, duration, bytes moved, task results'),
  )
    .option('-t, --target <cloud>', 'only the runs of this cloud')
    .option('-l, --limit <n>', 'at most this many runs (default 50, at most 500)')
    .action(async (id: string | undefined, options: RunsOptions) => {
      const client = await clientFor(options, io);
      if (id !== undefined) {
        const { run } = (await client.getJson(`/runs/${encodeURIComponent(id)}`)) as {
          run: RunSummary & { actions: ActionRecord[] };
        };
        if (options.json) return printJson(io, run);
        const head = [run.target, run.status, run.startedAt, seconds(run.durationMs), humanSize(run.bytes)].join('  ');
        const rows = run.actions.map((a) => [
          a.action,
          a.result,
          a.name ?? '-',
          a.imageId ?? '-',
          a.nativeId ?? '-',
          a.bytes === undefined ? '-' : humanSize(a.bytes),
          seconds(a.ms),
          a.error ? `${a.error.kind}: ${a.error.message}` : (a.detail ?? ''),
        ]);
        const tasks = rows.length
          ? table(['TASK', 'RESULT', 'NAME', 'IMAGE', 'NATIVE ID', 'BYTES', 'TIME', 'DETAIL'], rows)
          : '(no tasks)';
        const logs = run.actions
          .filter((a) => a.log?.length)
          .map((a) => [`log of ${a.action} ${a.name ?? a.nativeId ?? ''}:`, ...a.log!.map(logLine)].join('\n'));
        return print(io, [`${head}${run.error ? `\nerror: ${run.error}` : ''}`, tasks, ...logs].join('\n'));
      }
      const query: Record<string, string> = {};
      if (options.target) query['target'] = options.target;
      if (options.limit) query['limit'] = options.limit;
      const { runs } = (await client.getJson('/runs', query)) as { runs: RunSummary[] };
      if (options.json) return printJson(io, runs);
      if (runs.length === 0) return print(io, 'No runs yet.');
      const rows = runs.map((r) => [
        r.id,
        r.target,
        r.status + (r.dryRun ? ' (dry run)' : ''),
        r.trigger,
        r.startedAt,
        seconds(r.durationMs),
        humanSize(r.bytes),
        counted(r.counts) || 'nothing to do',
        r.drift === undefined ? '-' : String(r.drift),
        r.error ?? '',
      ]);
      print(
        io,
        table(['RUN', 'CLOUD', 'STATUS', 'TRIGGER', 'STARTED', 'TIME', 'BYTES', 'TASKS', 'DRIFT', 'ERROR'], rows),
      );
    });
}
