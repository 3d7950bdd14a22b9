import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, type SyncSession } from '../../agent/session.js';
import { planTarget, syncTarget, type Target } from '../../agent/sync/runner.js';
import type { RunRecord } from '../../core/catalog/port.js';
import { retryableKinds, type ErrorKind } from '../../core/errors.js';
import type { Image } from '../../core/image/model.js';
import { deleteImagesNamed, makeDriver, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { FaultProxy, type FaultKind } from '../support/fault-proxy.js';
import {
  addImage,
  catalogProblems,
  glanceProblems,
  makeDisk,
  testCaller,
  uploadContent,
  writeSyncConfig,
} from '../support/glance-sync.js';
import { seedFrom } from '../support/prng.js';
import { recordingLogger, type LogLine } from '../support/recording-logger.js';

/**
 * The agent against real Keystone + Glance through a proxy that injects faults (5xx, resets
 * mid-request, mid-upload and mid-response, hangs, slow bytes) into a quarter of the requests:
 * a small catalog converges within 3 runs — to exactly one good marked copy per image, nothing
 * stuck — first when created, then through updates, a replacement, a retirement and a new image;
 * only retryable failures are retried, and a refusal is not.
 *
 * The policy allows 5 attempts per action (100 ms first backoff): with one request in four
 * failing, an upload (create record, PUT, status read) fails 3 attempts in a row about one time
 * in ten, and a listing (two pages) fails 3 attempts about one time in twenty: at the default 3
 * attempts "within 3 runs" would fail a few times in a hundred by bad luck alone.
 *
 * VISOR_FAULT_SEED replays a run's faults (same seed, same order of requests: same faults; the
 * order can differ where actions run side by side).
 */
const seed = seedFrom('VISOR_FAULT_SEED', 20260509);
const rate = 0.25;
const run = randomBytes(3).toString('hex');
const prefix = `fault-${run}-`;
const tag = `fault-${run}`;
const agentId = `fault-agent-${run}`;

/** An action as the figures show it: kind:result, with its attempts when it took more than one. */
const actionText = (a: RunRecord['actions'][number]) =>
  `${a.action}:${a.result}${(a.attempts ?? 1) > 1 ? `x${a.attempts}` : ''}`;

describe('sync into Glance through a faulty network', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let proxy: FaultProxy;
  let session: SyncSession;
  let target: Target;
  let clean: Target;
  const lines: LogLine[] = [];
  const figures: string[] = [];

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    skip ??= (await requirePeer('qemu-img')).skip;
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-fault-'));
    proxy = await FaultProxy.start({
      keystone: new URL(peer.authUrl).origin,
      glance: peer.glanceUrl,
      seed,
      hangLimitMs: 30_000,
    });
    const config = await writeSyncConfig(dir, agentId, [
      { name: 'glance', authUrl: proxy.authUrl, peer, prefix, tag, requestTimeout: 2, attempts: 5, backoff: '100ms' },
    ]);
    session = await openSession({ configFile: config, env: {}, logger: recordingLogger(lines) });
    target = session.built.targets.get('glance')!;
    // The referee: the same target read straight from Glance, never through the proxy.
    clean = { ...target, driver: makeDriver(peer, 'admin', { requestTimeoutMs: 30_000 }) };
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    if (figures.length > 0) console.log(`fault suite (seed ${seed}, rate ${rate}):\n  ${figures.join('\n  ')}`);
    if (process.env['VISOR_FAULT_DEBUG'] === '1')
      console.log(
        proxy.log
          .map(
            (e) =>
              `${e.seq} +${e.at - proxy.log[0]!.at}ms ${e.service} ${e.method} ${e.path.slice(0, 60)} ` +
              `${e.fault ? JSON.stringify(e.fault) : '-'} up:${e.upstreamStatus ?? '-'} ${e.outcome ?? '?'}`,
          )
          .join('\n'),
      );
    await session?.close();
    await clean?.driver.close();
    await proxy?.close();
    await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  const expectation = () => ({ peer: peer!, session, prefix, tag, agentId, retire: 'hide' as const });

  /** Syncs through the faulty proxy until the referee sees nothing left to do: the number of runs it took. */
  const converge = async (label: string): Promise<{ runs: RunRecord[]; problems: string[] }> => {
    const runs: RunRecord[] = [];
    let problems: string[] = [];
    const seen = proxy.log.length;
    const started = Date.now();
    for (let i = 1; i <= 3; i++) {
      runs.push(await syncTarget(target, session.deps, { trigger: 'cli' }));
      const left = await planTarget(clean, session.deps);
      problems = [
        ...left.actions.map((a) => `still to do: ${a.kind} ${a.name}`),
        ...(await glanceProblems(expectation())).problems,
      ];
      if (problems.length === 0) break;
    }
    const requests = proxy.log.slice(seen);
    const injected = requests.filter((e) => e.fault && e.source === 'random');
    const byKind = Object.fromEntries(
      ['status', 'reset', 'hang', 'slow'].map((k) => [
        k,
        injected.filter((e) => e.fault!.kind === (k as FaultKind)).length,
      ]),
    );
    figures.push(
      `${label}: converged after ${runs.length} run(s) in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `run statuses ${runs.map((r) => r.status).join(', ')}; ` +
        `${requests.length} requests, ${injected.length} faults (${Object.entries(byKind)
          .map(([k, n]) => `${n} ${k}`)
          .join(', ')}); ` +
        `actions ${runs.map((r) => r.actions.map(actionText).join(' ') || '-').join(' | ')}`,
    );
    for (const r of runs) {
      if (r.error) figures.push(`  run ${r.id.slice(0, 8)} ${r.status}: ${r.error}`);
      for (const a of r.actions)
        if (a.error)
          figures.push(
            `  ${a.action} ${a.name} failed after ${a.attempts ?? 1} attempt(s): ${a.error.kind}: ${a.error.message}`,
          );
    }
    return { runs, problems };
  };

  /** Retries only for retryable kinds: in the agent's own log of retries, and in the run records. */
  const expectRetriesOnlyForRetryable = (runs: readonly RunRecord[]) => {
    const retried = lines.filter((l) => l.message === 'retrying after a retryable failure');
    for (const line of retried)
      expect(retryableKinds.has((line.meta['error'] as { kind: ErrorKind }).kind), JSON.stringify(line.meta)).toBe(
        true,
      );
    for (const record of runs.flatMap((r) => r.actions)) {
      if (record.result !== 'failed' || !record.error) continue;
      if (retryableKinds.has(record.error.kind as ErrorKind))
        expect(record.attempts, JSON.stringify(record)).toBe(target.policy.retries.attempts);
      else expect(record.attempts, JSON.stringify(record)).toBe(1);
    }
    return retried.length;
  };

  const images: Image[] = [];

  it('creates a small catalog (raw and qcow2) under 25% faults and converges within 3 runs', async (ctx) => {
    if (skip) ctx.skip(skip);
    const specs = [
      ['alpha', 'raw', 1024 * 1024 + 7],
      ['beta', 'raw', 2 * 1024 * 1024],
      ['gamma', 'qcow2', 1536 * 1024],
      ['delta', 'qcow2', 3 * 1024 * 1024],
    ] as const;
    for (const [name, format, bytes] of specs)
      images.push(await addImage(session.images, name, await makeDisk(dir, name, format, bytes), format, [tag]));
    proxy.rate = rate;
    lines.length = 0;
    const { runs, problems } = await converge('create 4 images');
    expect(problems).toEqual([]);
    expect(runs.length).toBeLessThanOrEqual(3);
    // The faults did happen, and the agent went through them.
    expect(proxy.faults().length).toBeGreaterThan(0);
    const retries = expectRetriesOnlyForRetryable(runs);
    figures.push(`create: ${retries} retries logged, all of retryable kinds`);
  });

  it(
    'converges within 3 runs through an update, a replacement, ' + 'a retirement and a new image, under faults',
    async (ctx) => {
      if (skip) ctx.skip(skip);
      const [alpha, beta, gamma] = images as [Image, Image, Image, Image];
      proxy.rate = 0;
      await session.images.update(testCaller, alpha.id, {
        name: 'alpha-renamed',
        properties: { purpose: 'fault-suite' },
      });
      await uploadContent(session.images, beta.id, await makeDisk(dir, 'beta2', 'raw', 1024 * 1024 + 3));
      await session.images.update(testCaller, gamma.id, { tags: [] });
      images.push(
        await addImage(session.images, 'epsilon', await makeDisk(dir, 'epsilon', 'qcow2', 1024 * 1024), 'qcow2', [tag]),
      );
      const before = await planTarget(clean, session.deps);
      expect(before.actions.map((a) => a.kind).sort()).toEqual(['create', 'replace', 'retire', 'update']);
      proxy.rate = rate;
      lines.length = 0;
      const { runs, problems } = await converge('update + replace + retire + create');
      expect(problems).toEqual([]);
      expect(runs.length).toBeLessThanOrEqual(3);
      const retries = expectRetriesOnlyForRetryable(runs);
      figures.push(`changes: ${retries} retries logged, all of retryable kinds`);
      proxy.rate = 0;
      expect(
        await catalogProblems(session, 'glance').then((p) => p.filter((x) => !x.startsWith('the last run'))),
      ).toEqual([]);
    },
  );

  it('does not retry a refusal (403), retries a 503, and converges on the next run', async (ctx) => {
    if (skip) ctx.skip(skip);
    proxy.rate = 0;
    const [alpha, , , delta] = images as [Image, Image, Image, Image];
    await session.images.update(testCaller, alpha.id, { properties: { purpose: 'refused' } });
    await session.images.update(testCaller, delta.id, { properties: { purpose: 'flaky' } });
    const alphaName = `${prefix}alpha-renamed`;
    const deltaName = `${prefix}delta`;
    const copies = await glanceProblems(expectation());
    const nativeOf = (name: string) => copies.records.find((r) => r.name === name && r['os_hidden'] !== true)!.id;
    const alphaNative = nativeOf(alphaName);
    const deltaNative = nativeOf(deltaName);
    const patches = (id: string) => proxy.log.filter((e) => e.op === 'patch' && e.path.startsWith(`/v2/images/${id}`));
    const before = { alpha: patches(alphaNative).length, delta: patches(deltaNative).length };
    proxy.script((info) => info.op === 'patch' && info.path.startsWith(`/v2/images/${alphaNative}`), {
      kind: 'status',
      status: 403,
      stage: 'before',
    });
    proxy.script((info) => info.op === 'patch' && info.path.startsWith(`/v2/images/${deltaNative}`), {
      kind: 'status',
      status: 503,
      stage: 'before',
    });
    lines.length = 0;

    const refused = await syncTarget(target, session.deps, { trigger: 'cli' });
    const alphaRecord = refused.actions.find((a) => a.nativeId === alphaNative)!;
    const deltaRecord = refused.actions.find((a) => a.nativeId === deltaNative)!;
    expect(alphaRecord).toMatchObject({
      action: 'update',
      result: 'failed',
      attempts: 1,
      error: { kind: 'forbidden', message: expect.stringMatching(/HTTP 403/) },
    });
    expect(patches(alphaNative).length - before.alpha).toBe(1);
    expect(deltaRecord).toMatchObject({ action: 'update', result: 'updated', attempts: 2 });
    expect(patches(deltaNative).length - before.delta).toBe(2);
    expect(refused.status).toBe('partial');
    expect(
      lines
        .filter((l) => l.message === 'retrying after a retryable failure')
        .map((l) => (l.meta['error'] as { kind: string }).kind),
    ).toEqual(['unavailable']);

    const next = await syncTarget(target, session.deps, { trigger: 'cli' });
    expect(next).toMatchObject({ status: 'succeeded', drift: 0 });
    expect(next.actions).toEqual([expect.objectContaining({ nativeId: alphaNative, result: 'updated', attempts: 1 })]);
    expect((await glanceProblems(expectation())).problems).toEqual([]);
    expect(await catalogProblems(session, 'glance')).toEqual([]);
    figures.push(
      `403 on PATCH: 1 attempt, failed (forbidden); 503 on PATCH: 2 attempts, updated; next run: succeeded, drift 0`,
    );
  });
});
