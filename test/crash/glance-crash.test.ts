import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, type SyncSession } from '../../agent/session.js';
import { catalogSnapshot } from '../../agent/sync/runner.js';
import type { RunRecord } from '../../core/catalog/port.js';
import type { Image } from '../../core/image/model.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { runVisorAsync, visorBin } from '../support/cli.js';
import { FaultProxy, type Fault, type Operation, type RequestInfo } from '../support/fault-proxy.js';
import {
  addImage,
  catalogProblems,
  cloudYaml,
  glanceImages,
  glanceProblems,
  makeDisk,
  testCaller,
  uploadContent,
} from '../support/glance-sync.js';
import { prng, seedFrom, type Prng } from '../support/prng.js';

/**
 * kill -9 of `visor sync` (the built CLI) at seeded random points of syncs against the real
 * Glance; after each kill, once the lease is free, one more `visor sync`: then Glance holds
 * exactly one good marked copy of every selected image and nothing unfinished, duplicated or
 * orphaned, and the catalog is consistent (every image available with its bits in the store; the
 * last run succeeded with nothing left to do).
 *
 * Between points the catalog changes (new images, metadata updates, new content, images
 * unselected or deleted, or all at once), so that the killed syncs create, upload, wait for
 * active, update, replace and retire; retire mode is `hide` for the first half of the points and
 * `delete` for the second.
 *
 * Kill points are chosen from outside the process: the agent reaches Glance through a proxy
 * (test/support/fault-proxy.ts, here without faults) that sees every request, and the test sends
 * SIGKILL when the chosen request arrives (it never reaches Glance), when Glance has answered it
 * (the work is done but the agent never learns it), a few ms after it arrives, after a chosen
 * number of bytes of an upload, or at a time offset from the start. No hook in the product.
 *
 * VISOR_CRASH_SEED replays the choices; VISOR_CRASH_POINTS (default 20) sets how many kills;
 * VISOR_CRASH_WAIT_LEASE=1 waits for every lease to expire (agent.leaseSeconds: 10) instead of
 * releasing the dead agent's lease (which is done after the first kill has shown that the lease
 * does keep a restarted agent out until it expires).
 */
const seed = seedFrom('VISOR_CRASH_SEED', 20260510);
const points = Number(process.env['VISOR_CRASH_POINTS'] ?? 20);
const waitEveryLease = process.env['VISOR_CRASH_WAIT_LEASE'] === '1';
const run = randomBytes(3).toString('hex');
const prefix = `crash-${run}-`;
const tag = `crash-${run}`;
const agentId = `crash-agent-${run}`;
const leaseName = 'target:glance';

type StepKind = 'create' | 'update' | 'replace' | 'retire' | 'remove' | 'mixed';
type Moment = 'arrival' | 'answered' | 'delay' | 'bytes';

interface Trigger {
  op: Operation | 'time';
  nth: number;
  moment: Moment | 'time';
  ms: number;
  bytes: number;
}

interface Point {
  n: number;
  phase: string;
  step: StepKind;
  mode: 'hide' | 'delete';
  trigger: string;
  killed: boolean;
  /** What was going on when the agent died. */
  at: string;
  ms: number;
  /** Unfinished or duplicated images of ours in Glance right after the kill. */
  leftBehind: string;
  lease: string;
  recovery: string;
}

describe('kill -9 of visor sync at seeded random points', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let config: string;
  let proxy: FaultProxy;
  let session: SyncSession;
  let rng: Prng;
  let counter = 0;
  const report: Point[] = [];

  const writeConfig = (mode: 'hide' | 'delete') =>
    writeFile(
      config,
      `dataDir: ${join(dir, 'data')}\nlogging: { level: error }\nagent: ` +
        `{ id: ${agentId}, leaseSeconds: 10, concurrency: 4 }\nclouds:\n` +
        cloudYaml({
          name: 'glance',
          authUrl: proxy.authUrl,
          peer: peer!,
          prefix,
          tag,
          requestTimeout: 10,
          retire: mode,
          attempts: 3,
          backoff: '200ms',
        }),
    );

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    skip ??= (await requirePeer('qemu-img')).skip;
    if (!skip && !Number.isSafeInteger(points))
      skip = `VISOR_CRASH_POINTS must be a whole number (got ${process.env['VISOR_CRASH_POINTS']})`;
    if (skip || !peer) return;
    rng = prng(seed);
    dir = await mkdtemp(join(tmpdir(), 'visor-crash-'));
    config = join(dir, 'visor.yaml');
    proxy = await FaultProxy.start({ keystone: new URL(peer.authUrl).origin, glance: peer.glanceUrl, seed });
    await writeConfig('hide');
    session = await openSession({ configFile: config, env: {}, logger: silentLogger });
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    if (report.length > 0) {
      const rows = report.map(
        (p) =>
          `  #${p.n} ${p.phase} [${p.step}, retire by ${p.mode}] ${p.trigger}: ${
            p.killed ? `killed at ${p.ms} ms during ${p.at}` : `missed (the sync ended first, ${p.ms} ms)`
          }; left behind: ${p.leftBehind}; lease: ${p.lease}; recovery: ${p.recovery}`,
      );
      console.log(
        `crash suite (seed ${seed}, ${report.filter((p) => p.killed).length} kills ` +
          `in ${report.length} syncs):\n${rows.join('\n')}`,
      );
    }
    await session?.close();
    await proxy?.close();
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  const catalog = async () => (await catalogSnapshot(session.deps.catalog)).filter((i) => i.status === 'available');
  const selected = async () => (await catalog()).filter((i) => i.tags.includes(tag));

  const newImage = async (): Promise<number> => {
    const name = `img${++counter}`;
    const format = rng.pick(['raw', 'qcow2'] as const);
    const file = await makeDisk(dir, `${name}-${counter}`, format, rng.int(1024, 2048) * 1024 + rng.int(0, 511));
    await addImage(session.images, name, file, format, [tag]);
    return (await stat(file)).size;
  };
  const newContent = async (image: Image): Promise<number> => {
    const format = image.diskFormat === 'qcow2' ? 'qcow2' : 'raw';
    const file = await makeDisk(
      dir,
      `${image.name}-${++counter}`,
      format,
      rng.int(1024, 2048) * 1024 + rng.int(0, 511),
    );
    await uploadContent(session.images, image.id, file);
    return (await stat(file)).size;
  };

  /** Changes the catalog for one step; returns the sizes of the uploads it causes (for byte-count kills). */
  const change = async (step: StepKind, n: number): Promise<number[]> => {
    const chosen = await selected();
    const some = (): Image => {
      if (chosen.length === 0) throw new Error(`step ${step} needs a selected image`);
      return chosen.splice(rng.int(0, chosen.length - 1), 1)[0]!;
    };
    const uploads: number[] = [];
    switch (step) {
      case 'create': {
        const unselected = (await catalog()).filter((i) => !i.tags.includes(tag));
        if (unselected.length > 0 && rng.next() < 0.3) {
          const back = rng.pick(unselected);
          await session.images.update(testCaller, back.id, { tags: [tag] });
          uploads.push(back.size!);
        }
        for (let i = chosen.length === 0 ? 3 : rng.int(1, 2); i > 0; i--) uploads.push(await newImage());
        break;
      }
      case 'update':
        for (let i = Math.min(chosen.length, rng.int(1, 2)); i > 0; i--) {
          const image = some();
          await session.images.update(
            testCaller,
            image.id,
            rng.next() < 0.5
              ? { properties: { step: String(n) } }
              : { name: `${image.name.split('_u')[0]}_u${n}`, properties: { step: String(n) } },
          );
        }
        break;
      case 'replace':
        uploads.push(await newContent(some()));
        break;
      case 'retire':
        await session.images.update(testCaller, some().id, { tags: [] });
        break;
      case 'remove':
        await session.images.delete(testCaller, some().id);
        break;
      case 'mixed': {
        uploads.push(await newImage());
        if (chosen.length > 0) await session.images.update(testCaller, some().id, { properties: { step: String(n) } });
        if (chosen.length > 0) uploads.push(await newContent(some()));
        if (chosen.length > 0) await session.images.update(testCaller, some().id, { tags: [] });
        break;
      }
    }
    return uploads;
  };

  /** The moments of a sync the kills are spread over, and the catalog changes that lead a sync into each. */
  const phases = {
    listing: ['create', 'update', 'replace', 'retire', 'remove', 'mixed'],
    'creating the record': ['create', 'replace', 'mixed'],
    'uploading (mid-stream)': ['create', 'replace', 'mixed'],
    'waiting for active': ['create', 'replace'],
    'updating metadata': ['update'],
    replacing: ['replace'],
    retiring: ['retire', 'remove'],
    'time offset': ['create', 'update', 'replace', 'retire', 'remove', 'mixed'],
  } as const satisfies Record<string, readonly StepKind[]>;
  type Phase = keyof typeof phases;

  const threeWay = (): Moment => rng.weighted<Moment>({ arrival: 1, answered: 1, delay: 1 });
  const onRequest = (op: Operation, nth = 1): Trigger => ({
    op,
    nth,
    moment: threeWay(),
    ms: rng.int(0, 200),
    bytes: 0,
  });

  /**
   * Where in the phase the agent dies. Within a create or replace, the first read of an image is
   * the status poll after its upload (Glance's PUT /file returns once the image is active; the
   * poll confirms it); the old copy's retirement (PATCH os_hidden, or DELETE) comes after.
   */
  const chooseTrigger = (phase: Phase, step: StepKind, mode: 'hide' | 'delete', uploads: number[]): Trigger => {
    const retireOp: Operation = mode === 'hide' ? 'patch' : 'delete';
    const midUpload = (): Trigger => ({
      op: 'upload',
      nth: 1,
      moment: 'bytes',
      ms: 0,
      bytes: rng.int(1, Math.max(2, Math.min(...uploads)) - 1),
    });
    switch (phase) {
      case 'listing':
        return onRequest('list', rng.int(1, 4));
      case 'creating the record':
        return onRequest('create', step === 'replace' ? 1 : rng.int(1, 2));
      case 'uploading (mid-stream)':
        return midUpload();
      case 'waiting for active':
        return onRequest('read');
      case 'updating metadata':
        return onRequest(rng.weighted<Operation>({ read: 1, patch: 2 }));
      case 'replacing': {
        const op = rng.weighted<Operation>({ create: 1, upload: 1, read: 1, [retireOp]: 3 });
        return op === 'upload' ? midUpload() : onRequest(op);
      }
      case 'retiring':
        return onRequest(rng.weighted<Operation>({ read: 1, [retireOp]: 2 }));
      case 'time offset': {
        // Within how long a whole sync takes here (measured, not assumed): a start-up made faster must
        // not turn every time offset into a miss.
        const ms = rng.int(100, Math.max(200, Math.floor(typicalSyncMs() * 0.95)));
        return { op: 'time', nth: 0, moment: 'time', ms, bytes: 0 };
      }
    }
  };

  /** Durations of syncs here that ran to their end (missed points, recoveries): the median sizes time offsets. */
  const fullSyncMs: number[] = [];
  const typicalSyncMs = (): number => {
    if (fullSyncMs.length === 0) return 1000;
    const sorted = [...fullSyncMs].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  };

  const describeTrigger = (t: Trigger) =>
    t.moment === 'time'
      ? `at ${t.ms} ms`
      : t.moment === 'bytes'
        ? `upload #${t.nth} after ${t.bytes} bytes`
        : t.moment === 'delay'
          ? `${t.op} #${t.nth} +${t.ms} ms`
          : `${t.op} #${t.nth} on ${t.moment}`;

  /** Runs `visor sync` and kills it with SIGKILL at the trigger; whether it died, when, and during what. */
  const killedSync = async (trigger: Trigger): Promise<{ killed: boolean; ms: number; at: string }> => {
    const child = spawn(process.execPath, [visorBin, 'sync', '-c', config, '--json'], {
      env: { PATH: process.env['PATH'], HOME: dir },
      stdio: 'ignore',
    });
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const started = Date.now();
    let at = '';
    let killedAt = 0;
    const kill = (what: string) => {
      if (killedAt) return;
      killedAt = Date.now();
      at = what;
      child.kill('SIGKILL');
    };
    const counts = new Map<string, number>();
    let armed: RequestInfo | undefined;
    const label = (info: RequestInfo) =>
      `${info.method} ${info.path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/, (id) => id.slice(0, 8)).split('?')[0]}`;
    const swallow: Fault = { kind: 'hang', stage: 'before' };
    proxy.tap = {
      onRequest: (info) => {
        if (killedAt) return swallow;
        if (info.service !== 'glance' || info.op !== trigger.op) return undefined;
        const n = (counts.get(info.op) ?? 0) + 1;
        counts.set(info.op, n);
        if (n !== trigger.nth) return undefined;
        if (trigger.moment === 'arrival') {
          kill(`${label(info)} (just arrived)`);
          return swallow;
        }
        if (trigger.moment === 'delay') setTimeout(() => kill(`${label(info)} (+${trigger.ms} ms)`), trigger.ms);
        else armed = info;
        return undefined;
      },
      onUploadProgress: (info, bytes) => {
        if (trigger.moment === 'bytes' && armed?.seq === info.seq && bytes >= trigger.bytes)
          kill(`${label(info)} (${bytes} bytes sent)`);
      },
      onUpstreamResponse: (info, status) => {
        if (trigger.moment === 'answered' && armed?.seq === info.seq)
          kill(`${label(info)} (Glance answered ${status})`);
      },
    };
    const timer = trigger.moment === 'time' ? setTimeout(() => kill('(time offset)'), trigger.ms) : undefined;
    const [, signal] = await exited;
    clearTimeout(timer);
    proxy.tap = undefined;
    return { killed: signal === 'SIGKILL', ms: (killedAt || Date.now()) - started, at };
  };

  const leftBehind = async (): Promise<string> => {
    const records = await glanceImages(peer!, prefix);
    const unfinished = records.filter((r) => r.status !== 'active').map((r) => r.status);
    const visible = new Map<string, number>();
    for (const r of records)
      if (r.status === 'active' && r['os_hidden'] !== true)
        visible.set(String(r['visor_image_id']), (visible.get(String(r['visor_image_id'])) ?? 0) + 1);
    const duplicates = [...visible.values()].filter((v) => v > 1).length;
    const parts = [
      ...(unfinished.length ? [`${unfinished.length} unfinished (${unfinished.join(', ')})`] : []),
      ...(duplicates ? [`${duplicates} image(s) with 2 visible copies`] : []),
    ];
    return parts.join(', ') || 'nothing';
  };

  const syncJson = async (): Promise<{ code: number | null; run: RunRecord | undefined; stderr: string }> => {
    const result = await runVisorAsync(['sync', '-c', config, '--json'], { env: { HOME: dir } });
    let parsed: { runs?: RunRecord[] } = {};
    try {
      parsed = JSON.parse(result.stdout) as typeof parsed;
    } catch {
      // reported through code and stderr
    }
    return { code: result.code, run: parsed.runs?.[0], stderr: result.stderr };
  };

  it(
    `leaves Glance and the catalog consistent after kills at ${points} points`,
    async (ctx) => {
      if (skip) ctx.skip(skip);
      // Phases in seeded random order, every one in each round: the kills spread over all of them.
      // A missed point (the sync ended before its moment came) gives its phase another try.
      const all = Object.keys(phases) as Phase[];
      const queue: Phase[] = [];
      let leaseShown = false;
      let mode: 'hide' | 'delete' = 'hide';
      let kills = 0;
      for (let n = 1; kills < points && n <= points * 2; n++) {
        if (kills >= Math.ceil(points / 2) && mode === 'hide') {
          mode = 'delete';
          await writeConfig(mode);
        }
        if (queue.length === 0) {
          const pool = [...all];
          while (pool.length > 0) queue.push(pool.splice(rng.int(0, pool.length - 1), 1)[0]!);
        }
        let phase = queue.shift()!;
        const have = (await selected()).length;
        let options: readonly StepKind[] = phases[phase];
        // Too few images to change, or enough already: lead the sync into this phase another way.
        if (have < 2) options = options.filter((k) => k === 'create');
        else if (have >= 6) options = options.filter((k) => k !== 'create' && k !== 'mixed');
        if (options.length === 0) {
          queue.unshift(phase);
          phase = have < 2 ? 'uploading (mid-stream)' : 'retiring';
          options = have < 2 ? ['create'] : ['retire', 'remove'];
        }
        const step = rng.pick(options);
        const uploads = await change(step, n);
        const trigger = chooseTrigger(phase, step, mode, uploads);
        const killed = await killedSync(trigger);
        const point: Point = {
          n,
          phase,
          step,
          mode,
          trigger: describeTrigger(trigger),
          killed: killed.killed,
          at: killed.at,
          ms: killed.ms,
          leftBehind: '-',
          lease: '-',
          recovery: '-',
        };
        report.push(point);
        const where = `seed ${seed}, point #${n} (${step}, ${point.trigger})`;
        if (!killed.killed) {
          queue.unshift(phase);
          fullSyncMs.push(killed.ms);
        } else {
          kills++;
          point.leftBehind = await leftBehind();
          const lease = await session.deps.catalog.leases.get(leaseName);
          if (!lease || lease.expiresAt <= Date.now()) point.lease = 'not held';
          else if (!leaseShown || waitEveryLease) {
            const showNow = !leaseShown;
            if (showNow) {
              // A restarted agent is kept out while the dead one's lease runs.
              const refused = await syncJson();
              expect(refused.code, `${where}: ${refused.stderr}`).toBe(1);
              expect(refused.run?.error, where).toMatch(
                /^another agent \(crash-agent-\w+\/\d+\/\w+\) is syncing glance until /,
              );
              leaseShown = true;
            }
            const left = lease.expiresAt - Date.now();
            await sleep(Math.max(0, left) + 250);
            point.lease = `waited ${Math.max(0, left)} ms for it to expire${
              showNow ? ' (a restart before that was refused)' : ''
            }`;
          } else {
            await session.deps.catalog.leases.release(leaseName, lease.holder);
            point.lease = 'released (its holder is dead)';
          }
        }
        const recoveryStarted = Date.now();
        const after = await syncJson();
        fullSyncMs.push(Date.now() - recoveryStarted);
        point.recovery = after.run
          ? `${after.run.status}, drift ${String(after.run.drift)}: ` +
            `${after.run.actions.map((a) => `${a.action}:${a.result}`).join(' ') || 'nothing to do'}`
          : `no run (exit ${after.code})`;
        expect(after.code, `${where}: ${after.stderr}`).toBe(0);
        expect(after.run, where).toMatchObject({ status: 'succeeded', drift: 0 });
        expect(
          (await glanceProblems({ peer: peer!, session, prefix, tag, agentId, retire: mode })).problems,
          where,
        ).toEqual([]);
        expect(await catalogProblems(session, 'glance'), where).toEqual([]);
      }
      expect(kills, `only ${kills} of ${report.length} syncs were killed`).toBeGreaterThanOrEqual(points);
      // Every phase had its kill (with enough points: two rounds of the phases at least).
      if (points >= 2 * all.length)
        expect(new Set(report.filter((p) => p.killed).map((p) => p.phase))).toEqual(new Set(all));
    },
    120_000 + points * 45_000,
  );
});
