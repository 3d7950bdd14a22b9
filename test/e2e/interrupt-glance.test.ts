import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, type SyncSession } from '../../agent/session.js';
import { catalogSnapshot } from '../../agent/sync/runner.js';
import type { RunRecord } from '../../core/catalog/port.js';
import { silentLogger } from '../../core/logging/logger.js';
import { deleteImagesNamed, glanceApi, peerStartTimeout } from '../adapters/glance/harness.js';
import { requirePeer } from '../peers/index.js';
import type { OpenStackPeer } from '../peers/openstack.js';
import { runVisorAsync, visorBin } from '../support/cli.js';
import { FaultProxy } from '../support/fault-proxy.js';
import {
  addImage,
  catalogProblems,
  glanceImages,
  glanceProblems,
  makeDisk,
  writeSyncConfig,
} from '../support/glance-sync.js';

/**
 * Ctrl-C and SIGTERM of the built `visor sync` against the real Glance, sent while an upload is
 * mid-stream (seen from outside, by the proxy the agent reaches Glance through; the upload is
 * slowed there so that there is a "mid"). The command must exit 130/143 with one clear line,
 * leave nothing unfinished or duplicated in Glance and nothing half-made in the catalog, record
 * its run as ended, and release its lease at once: a second `visor sync` right after succeeds.
 */
const run = randomBytes(3).toString('hex');
/** One agent id per case: a case's sync never sees (and cleans up) what another case left. */
const agentOf = (name: string) => `intr-agent-${run}-${name}`;

describe('interrupting visor sync mid-upload (real Glance)', () => {
  let peer: OpenStackPeer | undefined;
  let skip: string | undefined;
  let dir: string;
  let proxy: FaultProxy;
  const prefixes: string[] = [];

  beforeAll(async () => {
    ({ peer, skip } = await requirePeer('openstack'));
    skip ??= (await requirePeer('qemu-img')).skip;
    if (skip || !peer) return;
    dir = await mkdtemp(join(tmpdir(), 'visor-interrupt-'));
    proxy = await FaultProxy.start({ keystone: new URL(peer.authUrl).origin, glance: peer.glanceUrl, seed: 26 });
  }, peerStartTimeout);

  afterAll(async () => {
    if (!peer || skip) return;
    await proxy?.close();
    for (const prefix of prefixes) await deleteImagesNamed(peer, prefix);
    await rm(dir, { recursive: true, force: true });
  });

  const cases = [
    { signal: 'SIGINT', code: 130 },
    { signal: 'SIGTERM', code: 143 },
  ] as const;

  for (const { signal, code } of cases)
    it(`${signal} mid-upload: exits ${code}, leaves nothing partial, frees the lease at once`, async (ctx) => {
      if (skip) ctx.skip(skip);
      const prefix = `intr-${run}-${signal.toLowerCase()}-`;
      const tag = `intr-${run}-${signal.toLowerCase()}`;
      prefixes.push(prefix);
      const caseDir = await mkdtemp(join(dir, `${signal}-`));
      const agentId = agentOf(signal.toLowerCase());
      const config = await writeSyncConfig(caseDir, agentId, [
        { name: 'glance', authUrl: proxy.authUrl, peer: peer!, prefix, tag, requestTimeout: 20, concurrency: 2 },
      ]);
      const session: SyncSession = await openSession({ configFile: config, env: {}, logger: silentLogger });
      try {
        for (const name of ['alpha', 'beta']) {
          const file = await makeDisk(caseDir, name, 'raw', 3 * 1024 * 1024 + 17);
          await addImage(session.images, name, file, 'raw', [tag]);
        }

        const { exitCode, stderr, sentAt, ended, where } = await interrupted(
          proxy,
          ['sync', '-c', config],
          caseDir,
          signal,
        );
        expect(sentAt, `no transfer was seen mid-stream; ${where}`).toBeGreaterThan(0);
        expect(exitCode, where).toBe(code);
        // One line says what happened; no stack trace.
        expect(stderr, where).toMatch(
          new RegExp(`^visor: the sync interrupted by ${signal}; nothing partial was left behind$`, 'm'),
        );
        expect(stderr, where).not.toMatch(/^\s+at\s/m);
        // Besides the per-image progress lines: what is being done, then how it ended; no error log.
        expect(
          stderr.split('\n').filter((l) => l.startsWith('visor:')),
          where,
        ).toEqual([
          `visor: ${signal}: stopping the sync; cleaning up (again to exit at once)`,
          `visor: the sync interrupted by ${signal}; nothing partial was left behind`,
        ]);
        expect(stderr, where).not.toContain('"level":"error"');
        // Cleaning up took moments, not the rest of the uploads.
        expect(ended - sentAt, where).toBeLessThan(20_000);

        // Glance: nothing of ours unfinished, no image with two visible copies.
        const records = await glanceImages(peer!, prefix);
        expect(
          records.filter((r) => r.status !== 'active').map((r) => `${r.name} ${r.status}`),
          where,
        ).toEqual([]);
        const visible = records.filter((r) => r['os_hidden'] !== true).map((r) => String(r['visor_image_id']));
        expect(new Set(visible).size, where).toBe(visible.length);

        // Catalog: nothing half-made; the run is recorded as ended; the lease is free right away.
        expect(
          (await catalogSnapshot(session.deps.catalog)).filter((i) => i.status !== 'available').map((i) => i.name),
        ).toEqual([]);
        const last: RunRecord | undefined = (await session.deps.catalog.runs.list({ target: 'glance', limit: 1 }))[0];
        expect(last, where).toBeDefined();
        expect(last!.status, where).not.toBe('running');
        const lease = await session.deps.catalog.leases.get('target:glance');
        expect(lease === undefined || lease.expiresAt <= Date.now(), `lease still held: ${JSON.stringify(lease)}`).toBe(
          true,
        );

        // A second sync right after (the lease lasts 10 s; this must not wait for it) converges.
        const started = Date.now();
        const again = await runVisorAsync(['sync', '-c', config, '--json'], { env: { HOME: caseDir } });
        expect(again.code, again.stderr).toBe(0);
        const runs = (JSON.parse(again.stdout) as { runs: RunRecord[] }).runs;
        expect(runs[0], again.stdout).toMatchObject({ status: 'succeeded', drift: 0 });
        expect(Date.now() - started).toBeLessThan(30_000);
        const check = await glanceProblems({ peer: peer!, session, prefix, tag, agentId, retire: 'hide' });
        expect(check.problems).toEqual([]);
        expect(check.records.filter((r) => r['os_hidden'] !== true)).toHaveLength(2);
        expect(await catalogProblems(session, 'glance')).toEqual([]);
      } finally {
        proxy.tap = undefined;
        await session.close();
      }
    }, 120_000);

  for (const { signal, code } of cases)
    it(`visor migrate, ${signal} mid-push: exits ${code}, nothing partial, the next migrate finishes`, async (ctx) => {
      if (skip) ctx.skip(skip);
      const lower = signal.toLowerCase();
      // The source: two images planted straight in Glance; the destination: the same Glance under
      // another prefix, through the proxy (so only the push is seen, slowed and interrupted).
      const srcPrefix = `intr-${run}-${lower}-src-`;
      const dstPrefix = `intr-${run}-${lower}-dst-`;
      prefixes.push(srcPrefix, dstPrefix);
      const caseDir = await mkdtemp(join(dir, `migrate-${signal}-`));
      const agentId = agentOf(`migrate-${lower}`);
      const config = await writeSyncConfig(caseDir, agentId, [
        { name: 'src', authUrl: peer!.authUrl, peer: peer!, prefix: srcPrefix, tag: 'none', requestTimeout: 20 },
        { name: 'dst', authUrl: proxy.authUrl, peer: peer!, prefix: dstPrefix, tag: 'none', requestTimeout: 20 },
      ]);
      const api = await glanceApi(peer!, 'admin');
      const sources: string[] = [];
      for (const name of ['alpha', 'beta']) {
        const record = {
          name: `${srcPrefix}${name}`,
          disk_format: 'raw',
          container_format: 'bare',
          visibility: 'public',
        };
        const id = (await api.post('/v2/images', record)).data.id as string;
        const put = await api.put(`/v2/images/${id}/file`, randomBytes(3 * 1024 * 1024 + 5), {
          headers: { 'Content-Type': 'application/octet-stream' },
        });
        expect(put.status).toBe(204);
        sources.push(id);
      }
      const args = ['migrate', '-c', config, '--from', 'src', '--to', 'dst', '--name', `${srcPrefix}*`];

      const { exitCode, stderr, sentAt, ended, where } = await interrupted(proxy, args, caseDir, signal);
      expect(sentAt, `no transfer was seen mid-stream; ${where}`).toBeGreaterThan(0);
      expect(exitCode, where).toBe(code);
      expect(stderr, where).not.toMatch(/^\s+at\s/m);
      expect(
        stderr.split('\n').filter((l) => l.startsWith('visor:')),
        where,
      ).toEqual([
        `visor: ${signal}: stopping the migration; cleaning up (again to exit at once)`,
        `visor: the migration interrupted by ${signal}; nothing partial was left behind`,
      ]);
      expect(ended - sentAt, where).toBeLessThan(20_000);

      // The destination holds nothing unfinished and no image twice; the source is untouched.
      const copies = await glanceImages(peer!, dstPrefix);
      expect(
        copies.filter((r) => r.status !== 'active').map((r) => `${r.name} ${r.status}`),
        where,
      ).toEqual([]);
      const visible = copies.filter((r) => r['os_hidden'] !== true).map((r) => String(r['visor_image_id']));
      expect(new Set(visible).size, where).toBe(visible.length);
      expect((await glanceImages(peer!, srcPrefix)).map((r) => r.status)).toEqual(['active', 'active']);

      const session: SyncSession = await openSession({ configFile: config, env: {}, logger: silentLogger });
      try {
        expect(
          (await catalogSnapshot(session.deps.catalog)).filter((i) => i.status !== 'available').map((i) => i.name),
        ).toEqual([]);
        const last = (await session.deps.catalog.runs.list({ target: 'dst', limit: 1 }))[0];
        expect(last, where).toBeDefined();
        expect(last!.status, where).not.toBe('running');
        const lease = await session.deps.catalog.leases.get('target:dst');
        expect(lease === undefined || lease.expiresAt <= Date.now(), `lease still held: ${JSON.stringify(lease)}`).toBe(
          true,
        );
      } finally {
        await session.close();
      }

      // Right after (the lease lasts 10 s): the same migrate reuses the pulled images and finishes the push.
      const again = await runVisorAsync([...args, '--json'], { env: { HOME: caseDir } });
      expect(again.code, again.stderr).toBe(0);
      const body = JSON.parse(again.stdout) as { run: RunRecord; pulled: unknown[] };
      expect(body.run, again.stdout).toMatchObject({ status: 'succeeded', drift: 0 });
      const after = await glanceImages(peer!, dstPrefix);
      expect(after.filter((r) => r.status !== 'active')).toEqual([]);
      const live = after.filter((r) => r['os_hidden'] !== true);
      expect(live.map((r) => r.name).sort()).toEqual([`${dstPrefix}${srcPrefix}alpha`, `${dstPrefix}${srcPrefix}beta`]);
      expect(live.map((r) => r['size'])).toEqual([3 * 1024 * 1024 + 5, 3 * 1024 * 1024 + 5]);
      expect(live.every((r) => r['visor_agent'] === agentId)).toBe(true);
    }, 120_000);

  it('visor migrate, SIGINT mid-pull: exits 130, keeps nothing of the pull, pushes nothing', async (ctx) => {
    if (skip) ctx.skip(skip);
    // Both clouds through the proxy: the pull's downloads are slowed there and interrupted.
    const srcPrefix = `intr-${run}-pull-src-`;
    const dstPrefix = `intr-${run}-pull-dst-`;
    prefixes.push(srcPrefix, dstPrefix);
    const caseDir = await mkdtemp(join(dir, 'migrate-pull-'));
    const config = await writeSyncConfig(caseDir, agentOf('pull'), [
      { name: 'src', authUrl: proxy.authUrl, peer: peer!, prefix: srcPrefix, tag: 'none', requestTimeout: 20 },
      { name: 'dst', authUrl: proxy.authUrl, peer: peer!, prefix: dstPrefix, tag: 'none', requestTimeout: 20 },
    ]);
    const api = await glanceApi(peer!, 'admin');
    for (const name of ['alpha', 'beta']) {
      const record = {
        name: `${srcPrefix}${name}`,
        disk_format: 'raw',
        container_format: 'bare',
        visibility: 'public',
      };
      const id = (await api.post('/v2/images', record)).data.id as string;
      const put = await api.put(`/v2/images/${id}/file`, randomBytes(3 * 1024 * 1024 + 5), {
        headers: { 'Content-Type': 'application/octet-stream' },
      });
      expect(put.status).toBe(204);
    }
    const args = ['migrate', '-c', config, '--from', 'src', '--to', 'dst', '--name', `${srcPrefix}*`];

    const { exitCode, stderr, sentAt, ended, where } = await interrupted(proxy, args, caseDir, 'SIGINT', 'download');
    expect(sentAt, `no transfer was seen mid-stream; ${where}`).toBeGreaterThan(0);
    expect(exitCode, where).toBe(130);
    expect(stderr, where).not.toMatch(/^\s+at\s/m);
    expect(stderr, where).toMatch(/^visor: the migration interrupted by SIGINT; nothing partial was left behind$/m);
    expect(ended - sentAt, where).toBeLessThan(20_000);
    // No upload started: the push never ran.
    expect(where).not.toMatch(/\(upload,/);

    // Nothing of the cut-off pulls in the catalog or its store; nothing in the destination.
    const session: SyncSession = await openSession({ configFile: config, env: {}, logger: silentLogger });
    try {
      const left = (await catalogSnapshot(session.deps.catalog)).filter((i) => i.status !== 'available');
      expect(
        left.map((i) => `${i.name} ${i.status}`),
        where,
      ).toEqual([]);
      const kept = await catalogSnapshot(session.deps.catalog);
      for (const image of kept) expect(image.size).toBe(3 * 1024 * 1024 + 5);
      // The store holds the bits of the finished pulls and nothing more (no partial file).
      const files = await filesUnder(join(caseDir, 'data'));
      const bits = files.filter((f) => f.size >= 1024 * 1024);
      expect(
        bits.map((f) => f.size),
        JSON.stringify(files),
      ).toEqual(kept.map(() => 3 * 1024 * 1024 + 5));
      expect(
        files.filter((f) => /\.(part|tmp)|partial/i.test(f.path)),
        JSON.stringify(files),
      ).toEqual([]);
    } finally {
      await session.close();
    }
    expect(await glanceImages(peer!, dstPrefix)).toEqual([]);

    // The same migrate right after pulls what is missing and pushes both.
    const again = await runVisorAsync([...args, '--json'], { env: { HOME: caseDir } });
    expect(again.code, again.stderr).toBe(0);
    expect((JSON.parse(again.stdout) as { run: RunRecord }).run).toMatchObject({ status: 'succeeded', drift: 0 });
    const live = (await glanceImages(peer!, dstPrefix)).filter((r) => r.status === 'active' && r['os_hidden'] !== true);
    expect(live.map((r) => r.name).sort()).toEqual([`${dstPrefix}${srcPrefix}alpha`, `${dstPrefix}${srcPrefix}beta`]);
  }, 120_000);
});

interface Interrupted {
  exitCode: number | null;
  stderr: string;
  /** When the signal was sent (0: never: no upload bytes reached the proxy). */
  sentAt: number;
  /** When the command exited. */
  ended: number;
  /** What to print when an assertion fails: the exit, the requests the proxy saw, the output. */
  where: string;
}

/**
 * Runs the built `visor` with `args` and sends it `signal` mid-transfer: once 256 KiB of one of its
 * uploads have gone through the proxy, or 0.7 s into one of its downloads. Those transfers are
 * slowed there (1 MiB/s) so that the signal lands mid-stream.
 */
async function interrupted(
  proxy: FaultProxy,
  args: readonly string[],
  home: string,
  signal: 'SIGINT' | 'SIGTERM',
  during: 'upload' | 'download' = 'upload',
): Promise<Interrupted> {
  proxy.script((i) => i.op === during, { kind: 'slow', bytesPerSecond: 1024 * 1024, latencyMs: 0 }, 2);
  const child = spawn(process.execPath, [visorBin, ...args], {
    env: { PATH: process.env['PATH'], HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const logFrom = proxy.log.length;
  // Only this child's uploads count (a slowed upload of an earlier case may still be draining).
  const firstSeq = (proxy.log.at(-1)?.seq ?? 0) + 1;
  let sentAt = 0;
  let sentAfter = 0;
  const send = (bytes: number) => {
    if (sentAt) return;
    sentAt = Date.now();
    sentAfter = bytes;
    child.kill(signal);
  };
  proxy.tap = {
    onUploadProgress: (info, bytes) => {
      if (during === 'upload' && info.seq >= firstSeq && bytes >= 256 * 1024) send(bytes);
    },
    // The proxy counts no download bytes: 0.7 s into a 3 s (slowed) download is mid-stream.
    onUpstreamResponse: (info, status) => {
      if (during === 'download' && info.op === 'download' && info.seq >= firstSeq && status === 200)
        setTimeout(() => send(0), 700);
    },
  };
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const [exitCode, exitSignal] = await exited;
  clearTimeout(watchdog);
  proxy.tap = undefined;
  const ended = Date.now();
  const seen = proxy.log
    .slice(logFrom)
    .map((e) => `${e.method} ${e.path.split('?')[0]} (${e.op}, ${e.bytesUp} B up, ${e.outcome ?? 'open'})`);
  const where =
    `exit ${exitCode}/${exitSignal} after ${sentAfter} B up; requests seen: ${seen.join(' | ')}\n` +
    `stdout: ${stdout}\nstderr: ${stderr}`;
  return { exitCode, stderr, sentAt, ended, where };
}

/** Every regular file under `dir`, with its size. */
async function filesUnder(dir: string): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.push({ path, size: (await stat(path)).size });
  }
  return out;
}
