import type { RunRecord } from '../../../core/catalog/port.js';
import { VisorError } from '../../../core/errors.js';
import { resolveAsync, RuntimeIds } from '../../../core/registry/runtime.js';
import { openSession, type SyncSession } from '../../session.js';
import { loadClientSettings } from '../../client/credentials.js';
import { compose, type Composition } from '../../compose.js';
import { globToRegExp } from '../../sync/desired.js';
import type { SyncEvent } from '../../sync/executor.js';
import { execute } from '../../sync/executor.js';
import type { Action, Plan } from '../../sync/planner.js';
import { planTarget, runStatus, syncTarget, type Target } from '../../sync/runner.js';
import { ExitCode } from '../exit-codes.js';
import { humanSize } from '../format.js';
import { print, printJson, table, type CliIo } from '../io.js';

interface Options {
  config?: string;
  dataDir?: string;
  json?: boolean;
  target?: string;
  dryRun?: boolean;
  host?: string;
  port?: string;
  url?: string;
  wait?: boolean;
  from?: string;
  to?: string;
  name?: string[];
  id?: string[];
}

async function open(options: Options, io: CliIo, only?: string, serveContent = false): Promise<SyncSession> {
  return openSession({ configFile: options.config, dataDir: options.dataDir, env: io.env }, only, { serveContent });
}

function describeAction(action: Action): string {
  switch (action.kind) {
    case 'create':
      return action.desired.convertFrom ? `upload (convert ${action.desired.convertFrom} -> ${action.desired.diskFormat})` : 'upload';
    case 'replace':
      return `upload new content, then retire ${action.retire.length} old cop${action.retire.length === 1 ? 'y' : 'ies'}`;
    case 'update':
      return action.changes.join('; ');
    case 'adopt':
      return `mark ${action.nativeId} as this target's (${action.reason})`;
    case 'retire':
      return `${action.mode}${action.startsGrace ? ' (grace period starts)' : ''}: ${action.reason}`;
    case 'cleanup':
      return `delete ${action.nativeId}: ${action.reason}`;
    case 'import':
      return `import ${action.mode === 'full' ? 'metadata and bits' : 'metadata'} into the catalog`;
  }
}

function planRows(plan: Plan): string[][] {
  return plan.actions.map((a) => [plan.target, a.kind, a.name, describeAction(a)]);
}

function planJson(plan: Plan) {
  return {
    target: plan.target,
    actions: plan.actions.map((a) => ({ kind: a.kind, name: a.name, ...('imageId' in a && a.imageId ? { imageId: a.imageId } : {}), ...('nativeId' in a ? { nativeId: a.nativeId } : {}), detail: describeAction(a) })),
    notes: plan.notes,
  };
}

function exitCodeOf(runs: readonly RunRecord[]): number {
  if (runs.length === 0) return ExitCode.ok;
  if (runs.every((r) => r.status === 'succeeded')) return ExitCode.ok;
  if (runs.every((r) => r.status === 'failed')) return ExitCode.failure;
  return ExitCode.partial;
}

function progressPrinter(io: CliIo, target: string): (event: SyncEvent) => void {
  const started = new Map<Action, number>();
  return (event) => {
    if (event.type === 'start') started.set(event.action, Date.now());
    if (event.type !== 'end') return;
    const r = event.record;
    const seconds = (Date.now() - (started.get(event.action) ?? Date.now())) / 1000;
    const size = r.bytes ? ` ${humanSize(r.bytes)}${seconds > 0.5 ? ` at ${humanSize(r.bytes / seconds)}/s` : ''}` : '';
    const why = r.error ? `: ${r.error.kind}: ${r.error.message}` : r.detail ? ` (${r.detail})` : '';
    io.stderr.write(`[${target}] ${r.action} ${r.name ?? r.nativeId ?? ''}: ${r.result}${size}${why}\n`);
  };
}

export async function runSyncCommand(name: string, args: unknown[], options: Options, io: CliIo): Promise<void> {
  switch (name) {
    case 'agent':
      return runAgent(options, io);
    case 'plan': {
      const session = await open(options, io, options.target);
      try {
        const plans: Plan[] = [];
        const failures: string[] = [];
        for (const target of session.built.targets.values()) {
          try {
            plans.push(await planTarget(target, session.deps));
          } catch (error) {
            failures.push(`${target.name}: ${(error as Error).message}`);
          }
        }
        for (const [target, error] of session.built.failed) failures.push(`${target}: ${error.message}`);
        if (options.json) printJson(io, { plans: plans.map(planJson), failures });
        else {
          const rows = plans.flatMap(planRows);
          print(io, rows.length > 0 ? table(['CLOUD', 'ACTION', 'IMAGE', 'DETAIL'], rows) : 'Every cloud is in step with the catalog: nothing to do.');
          for (const p of plans) for (const note of p.notes) print(io, `note [${p.target}] ${note.name}: ${note.message}`);
          for (const f of failures) io.stderr.write(`visor: cannot plan ${f}\n`);
        }
        if (failures.length > 0) process.exitCode = plans.length > 0 ? ExitCode.partial : ExitCode.failure;
      } finally {
        await session.close();
      }
      return;
    }
    case 'sync': {
      const session = await open(options, io, options.target, !options.dryRun);
      try {
        const targets = [...session.built.targets.values()].filter((t) => t.policy.enabled || options.target !== undefined);
        const runs = await Promise.all(
          targets.map((target) =>
            syncTarget(target, session.deps, {
              trigger: 'cli',
              ...(options.dryRun ? { dryRun: true } : {}),
              ...(options.json ? {} : { onEvent: progressPrinter(io, target.name) }),
              ...(options.dryRun && !options.json ? { onPlan: (plan: Plan) => print(io, plan.actions.length ? table(['CLOUD', 'ACTION', 'IMAGE', 'DETAIL'], planRows(plan)) : `[${plan.target}] nothing to do`) } : {}),
            }),
          ),
        );
        const failedDrivers = [...session.built.failed].map(([target, error]) => ({ target, error: error.message }));
        if (options.json) printJson(io, { runs, failedClouds: failedDrivers });
        else {
          for (const run of runs) {
            const counts = countResults(run);
            print(io, `[${run.target}] ${run.status}${run.error ? `: ${run.error}` : ''} — ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ') || 'nothing to do'}${run.drift ? `; ${run.drift} still to do` : ''}`);
          }
          for (const f of failedDrivers) io.stderr.write(`visor: cloud ${f.target} is unusable: ${f.error}\n`);
        }
        const all: RunRecord[] = [...runs, ...failedDrivers.map((f) => ({ status: 'failed' }) as RunRecord)];
        process.exitCode = exitCodeOf(all);
      } finally {
        await session.close();
      }
      return;
    }
    case 'status':
      return runStatusCommand(options, io);
    case 'trigger':
      return runTrigger(String(args[0]), options, io);
    case 'migrate':
      return runMigrate(options, io);
    default:
      throw new VisorError('internal', `unknown command ${name}`);
  }
}

function countResults(run: RunRecord): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of run.actions) counts[a.result] = (counts[a.result] ?? 0) + 1;
  return counts;
}

async function runAgent(options: Options, io: CliIo): Promise<void> {
  const port = options.port === undefined ? undefined : Number(options.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new VisorError('invalidInput', `--port must be a TCP port (0-65535), got "${options.port}"`);
  // Imported here: the daemon brings the HTTP server framework, which one-shot commands do not need.
  const { AgentDaemon } = await import('../../daemon.js');
  const daemon = new AgentDaemon({ configFile: options.config, dataDir: options.dataDir, env: io.env, host: options.host, port });
  await daemon.start();
  await new Promise<void>((resolveStop) => {
    const onHup = () => void daemon.reload().catch(() => undefined);
    process.on('SIGHUP', onHup);
    const stop = () => {
      process.off('SIGHUP', onHup);
      void daemon.stop().then(resolveStop, resolveStop);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

async function runStatusCommand(options: Options, io: CliIo): Promise<void> {
  let rows: { target: string; status: string; finished: string; result: string; drift: string; next: string; error: string }[];
  let json: unknown;
  if (options.url) {
    const { VisorClient } = await import('../../client/client.js');
    const client = new VisorClient(loadClientSettings(io.env, { url: options.url }));
    const body = (await client.getJson('/status')) as { targets: { name: string; lastRun?: { status: string; finishedAt?: string; counts: Record<string, number>; error?: string }; drift?: number; nextRun?: string; error?: string; running: boolean }[] };
    json = body;
    rows = body.targets.map((t) => ({
      target: t.name,
      status: t.running ? 'running' : (t.lastRun?.status ?? 'never run'),
      finished: t.lastRun?.finishedAt ?? '-',
      result: Object.entries(t.lastRun?.counts ?? {}).map(([k, v]) => `${v} ${k}`).join(', ') || '-',
      drift: t.drift === undefined ? '-' : String(t.drift),
      next: t.nextRun ?? '-',
      error: t.error ?? t.lastRun?.error ?? '',
    }));
  } else {
    const composition = await compose({ configFile: options.config, dataDir: options.dataDir, env: io.env });
    try {
      const catalog = await resolveAsync(composition.registry.container, RuntimeIds.Catalog);
      const targets = [];
      for (const [name, cloud] of Object.entries(composition.config.clouds)) {
        const last = (await catalog.runs.list({ target: name, limit: 1 }))[0];
        targets.push({ name, adapter: cloud.adapter, schedule: cloud.sync.schedule, lastRun: last, drift: last?.drift });
      }
      json = { targets };
      rows = targets.map((t) => ({
        target: t.name,
        status: t.lastRun?.status ?? 'never run',
        finished: t.lastRun?.finishedAt ?? '-',
        result: t.lastRun ? Object.entries(countResults(t.lastRun)).map(([k, v]) => `${v} ${k}`).join(', ') || 'in step' : '-',
        drift: t.drift === undefined ? '-' : String(t.drift),
        next: t.schedule ?? 'manual',
        error: t.lastRun?.error ?? '',
      }));
    } finally {
      await composition.dispose();
    }
  }
  if (options.json) printJson(io, json);
  else print(io, rows.length ? table(['CLOUD', 'STATUS', 'FINISHED', 'LAST RUN', 'DRIFT', 'NEXT', 'ERROR'], rows.map((r) => [r.target, r.status, r.finished, r.result, r.drift, r.next, r.error])) : 'No clouds configured.');
}

async function runTrigger(target: string, options: Options, io: CliIo): Promise<void> {
  const { VisorClient } = await import('../../client/client.js');
  const client = new VisorClient(loadClientSettings(io.env, { url: options.url }));
  const result = await client.postJson(`/targets/${encodeURIComponent(target)}/sync${options.wait ? '?wait=true' : ''}`);
  if (options.json) printJson(io, result);
  else if (options.wait) {
    const run = (result as { run: RunRecord }).run;
    print(io, `[${run.target}] ${run.status}${run.error ? `: ${run.error}` : ''}`);
    process.exitCode = exitCodeOf([run]);
  } else print(io, `Sync of ${target} started; see \`visor status\`.`);
}

async function runMigrate(options: Options, io: CliIo): Promise<void> {
  const from = options.from!;
  const to = options.to!;
  if (from === to) throw new VisorError('invalidInput', '--from and --to name the same cloud');
  const session = await open(options, io, undefined, true);
  try {
    const source = session.built.targets.get(from);
    const destination = session.built.targets.get(to);
    for (const [name, target] of [[from, source], [to, destination]] as const) {
      if (!target) throw session.built.failed.get(name) ?? new VisorError('invalidInput', `no cloud named ${name} in the configuration`);
    }
    const names = (options.name ?? []).map(globToRegExp);
    const ids = new Set(options.id ?? []);
    const listing = await source!.driver.list();
    const chosen = listing.filter((i) => i.state === 'active' && (names.length === 0 || names.some((re) => re.test(i.name))) && (ids.size === 0 || ids.has(i.nativeId)));
    if (chosen.length === 0) throw new VisorError('notFound', `no active image in ${from} matches`);
    // 1. Pull: each chosen image into the catalog, bits included (already imported ones are reused).
    const existing = await session.deps.catalog.images.list({ filters: { 'properties.visor_origin_target': from }, limit: 10_000 });
    const known = new Map(existing.items.map((i) => [i.properties['visor_origin_id'], i.id]));
    const pull: Plan = { target: from, notes: [], actions: chosen.filter((i) => !known.has(i.nativeId)).map((i) => ({ kind: 'import' as const, nativeId: i.nativeId, name: i.name, mode: 'full' as const })) };
    const pulled = await execute(pull, {
      target: from,
      agentId: session.deps.agentId,
      policy: { ...source!.policy, import: 'full' },
      driver: source!.driver,
      catalog: session.deps.catalog,
      stores: session.deps.stores,
      defaultStore: session.deps.defaultStore,
      cacheDir: session.deps.cacheDir,
      limiter: session.deps.limiter,
      logger: session.deps.logger,
      ...(options.json ? {} : { onEvent: progressPrinter(io, from) }),
    });
    const imageIds = new Set<string>([...chosen.map((i) => known.get(i.nativeId)).filter((id): id is string => id !== undefined), ...pulled.filter((r) => r.result === 'imported').map((r) => r.imageId!)]);
    // 2. Push: a sync of the destination limited to those images, whatever its selector says.
    const pushTarget: Target = { ...destination!, policy: { ...destination!.policy, selector: { access: ['public', 'private', 'shared'] } } };
    const run = await syncTarget(pushTarget, session.deps, { trigger: 'cli', onlyImages: imageIds, ...(options.json ? {} : { onEvent: progressPrinter(io, to) }) });
    const pullFailed = pulled.filter((r) => r.result === 'failed');
    if (options.json) printJson(io, { pulled, run });
    else print(io, `migrate ${from} -> ${to}: ${imageIds.size} image(s) pulled${pullFailed.length ? `, ${pullFailed.length} failed to pull` : ''}; push ${run.status}${run.error ? `: ${run.error}` : ''}`);
    const pullStatus = runStatus(pulled, undefined);
    process.exitCode = exitCodeOf([{ status: pullStatus } as RunRecord, run]);
  } finally {
    await session.close();
  }
}
