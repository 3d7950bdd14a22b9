import type { Command } from 'commander';
import type { createTask as CreateTask } from 'node-cron';
import { print, printJson, table, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';
import { countResults } from '../sync-output.js';

interface Row {
  target: string;
  status: string;
  finished: string;
  result: string;
  drift: string;
  next: string;
  error: string;
}

interface AgentStatus {
  targets: {
    name: string;
    lastRun?: { status: string; finishedAt?: string; counts: Record<string, number>; error?: string };
    drift?: number;
    nextRun?: string;
    error?: string;
    running: boolean;
  }[];
}

const results = (counts: Record<string, number>) =>
  Object.entries(counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');

export function statusCommand(program: Command, io: CliIo): void {
  withRuntimeFlags(program.command('status').description('last run, result, drift and next run of every cloud'), io)
    .option('--url <url>', 'ask a running agent (signed request) instead of reading the catalog')
    .action(async (flags: RuntimeFlags & { url?: string }) => {
      const { json, rows, notes = [] } = flags.url ? await fromAgent(flags.url, io) : await fromCatalog(flags, io);
      if (flags.json) printJson(io, json);
      else if (rows.length === 0) print(io, 'No clouds configured.');
      else {
        const cells = rows.map((r) => [r.target, r.status, r.finished, r.result, r.drift, r.next, r.error]);
        print(io, table(['CLOUD', 'STATUS', 'FINISHED', 'LAST RUN', 'DRIFT', 'NEXT', 'ERROR'], cells));
        for (const note of notes) print(io, note);
      }
    });
}

async function fromAgent(url: string, io: CliIo): Promise<{ json: unknown; rows: Row[]; notes?: string[] }> {
  const { VisorClient } = await import('../../client/client.js');
  const { loadClientSettings } = await import('../../client/credentials.js');
  const client = new VisorClient(loadClientSettings(io.env, { url }));
  const body = (await client.getJson('/status')) as AgentStatus;
  const rows = body.targets.map((t) => ({
    target: t.name,
    status: t.running ? 'running' : (t.lastRun?.status ?? 'never run'),
    finished: t.lastRun?.finishedAt ?? '-',
    result: results(t.lastRun?.counts ?? {}) || '-',
    drift: t.drift === undefined ? '-' : String(t.drift),
    next: t.nextRun ?? '-',
    error: t.error ?? t.lastRun?.error ?? '',
  }));
  return { json: body, rows };
}

async function fromCatalog(flags: RuntimeFlags, io: CliIo): Promise<{ json: unknown; rows: Row[]; notes: string[] }> {
  const notes: string[] = [];
  const { openRuntime } = await import('../../runtime/open-runtime.js');
  const { createTask } = await import('node-cron');
  const runtime = await openRuntime(runtimeOptions(flags, io));
  try {
    const catalog = await runtime.catalog();
    const { sharingSummary } = await import('../../sync/share-run.js');
    const targets = [];
    for (const [name, cloud] of Object.entries(runtime.config.clouds)) {
      const last = (await catalog.runs.list({ target: name, limit: 1 }))[0];
      const nextRun = cloud.sync.enabled && cloud.sync.schedule ? nextTime(createTask, cloud.sync.schedule) : undefined;
      const enabled = cloud.sync.enabled;
      const sharing = await sharingSummary(catalog, name);
      const { adapter } = cloud;
      targets.push({
        name,
        adapter,
        enabled,
        schedule: cloud.sync.schedule,
        nextRun,
        lastRun: last,
        drift: last?.drift,
        sharing,
      });
    }
    const rows = targets.map((t) => ({
      target: t.name,
      status: t.lastRun?.status ?? 'never run',
      finished: t.lastRun?.finishedAt ?? '-',
      result: t.lastRun ? results(countResults(t.lastRun)) || 'in step' : '-',
      drift: t.drift === undefined ? '-' : String(t.drift),
      // The time, as a running agent shows it: the cron expression is in the config and --json.
      next: t.nextRun ?? (!t.enabled ? 'disabled' : t.schedule ? '-' : 'manual'),
      error: t.lastRun?.error ?? '',
    }));
    // Memberships waiting for their project, and catalog members no principal is mapped for.
    for (const t of targets) {
      const { pending, unmapped } = t.sharing;
      if (pending.length > 0) notes.push(`note [${t.name}] pending acceptance: ${pending.join(', ')}`);
      if (unmapped.length > 0) {
        notes.push(`note [${t.name}] members with no principal in sync.sharing.members: ${unmapped.join(', ')}`);
      }
    }
    return { json: { targets }, rows, notes };
  } finally {
    await runtime.close();
  }
}

/** When the agent would next run a schedule (computed, not started: nothing runs here). */
function nextTime(create: typeof CreateTask, expression: string): string | undefined {
  const task = create(expression, () => undefined);
  try {
    return task.getNextRuns(1)[0]?.toISOString();
  } finally {
    void task.destroy();
  }
}
