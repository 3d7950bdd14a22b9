// Ingest and download of one file: visor's API (with its own client, and with curl) side by side
// with `cp`, `cp` + fsync, and Glance's PUT/GET /file (curl). Runs are interleaved and repeated;
// the median counts. Besides wall time, the CPU seconds each server spent: on a machine with few
// cores, CPU per GiB is what bounds the throughput. Every visor variant (the build under test, and
// optionally an earlier build) runs in every round.
import { createReadStream, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createRecord, curlDownload as glanceDownload, curlUpload, glance } from '../lib/glance.mjs';
import {
  cpuTimesOf,
  median,
  mibps,
  peakRssOf,
  processTree,
  resetPeakRss,
  runMeasured,
  selfCpuSeconds,
  timed,
} from '../lib/util.mjs';

async function fsyncFile(path) {
  const handle = await open(path, 'r');
  await handle.sync();
  await handle.close();
}

/**
 * Where downloads go: nowhere, like curl's -o /dev/null (Node's fs writes to /dev/null cost a thread-pool round trip
 * per chunk).
 */
const discard = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });

/** One measured run: wall seconds, CPU seconds of the server's processes and of this process. */
async function measure(serverPids, fn) {
  const pids = serverPids();
  const cpu0 = cpuTimesOf(pids);
  const self0 = selfCpuSeconds();
  const { value, seconds } = await timed(fn);
  const cpu1 = cpuTimesOf(pids);
  const serverSys = cpu1.system - cpu0.system;
  return {
    value,
    seconds,
    serverCpu: cpu1.user - cpu0.user + serverSys,
    serverSys,
    clientCpu: selfCpuSeconds() - self0,
  };
}

const summarise = (bytes, runs) => {
  const seconds = median(runs.map((r) => r.seconds));
  const gib = bytes / 1024 ** 3;
  return {
    seconds,
    runs: runs.map((r) => r.seconds),
    mibps: mibps(bytes, seconds),
    serverCpuPerGiB: median(runs.map((r) => r.serverCpu)) / gib,
    serverSysPerGiB: median(runs.map((r) => r.serverSys)) / gib,
    clientCpuPerGiB: median(runs.map((r) => r.clientCpu)) / gib,
  };
};

export async function transferFigures({
  dir,
  source,
  bytes,
  repeat,
  downloadRepeat = repeat,
  peer,
  token,
  variants,
  meta,
  prefix,
  log,
}) {
  const glancePids = () => processTree(peer.glancePid);
  const runs = { cp: [], cpFsync: [], glanceIngest: [], glanceDownload: [] };
  for (const v of variants)
    for (const k of ['Ingest', 'CurlIngest', 'Download', 'CurlDownload', 'FreshCurlDownload'])
      runs[`${v.key}${k}`] = [];
  const kept = {};
  const peakRss = {};
  let glanceId;

  for (let r = 0; r < repeat; r++) {
    log(`  ingest round ${r + 1}/${repeat}`);
    const copy = join(dir, 'cp.raw');
    const cp = await runMeasured('cp', [source, copy]);
    runs.cp.push({ seconds: cp.seconds, serverCpu: cp.cpuSeconds, serverSys: 0, clientCpu: 0 });
    rmSync(copy);
    const synced = await measure(
      () => [],
      async () => {
        const c = await runMeasured('cp', [source, copy]);
        await fsyncFile(copy);
        return c;
      },
    );
    runs.cpFsync.push({ ...synced, serverCpu: synced.value.cpuSeconds });
    rmSync(copy);

    for (const v of variants) {
      const pids = () => [v.server.pid];
      const rssReset = resetPeakRss(v.server.pid);
      const viaClient = await measure(pids, () =>
        v.client.add(meta(r === 0 ? v.tag : undefined), {
          stream: createReadStream(source, { highWaterMark: 1024 * 1024 }),
          size: bytes,
        }),
      );
      peakRss[v.key] = Math.max(peakRss[v.key] ?? 0, rssReset ? peakRssOf(v.server.pid) : 0);
      runs[`${v.key}Ingest`].push(viaClient);
      if (r === 0) kept[v.key] = viaClient.value;
      else await v.client.delete(String(viaClient.value._id));

      const curlMeta = { name: `${prefix}curl-ingest`, architecture: 'x86_64', format: 'raw' };
      const sha256 = kept[v.key].checksums.sha256;
      const viaCurl = await measure(pids, () =>
        v.kit.curlIngest(v.server.url, v.user, source, bytes, curlMeta, sha256),
      );
      runs[`${v.key}CurlIngest`].push(viaCurl);
      if (viaCurl.value.checksums?.sha256 !== kept[v.key].checksums.sha256)
        throw new Error('visor stored different bytes through curl than through its client');
      await v.client.delete(String(viaCurl.value._id));
    }

    // Glance: the record first (as every Glance upload needs one), then the bits.
    const glanceRun = await measure(glancePids, async () => {
      const record = await createRecord(peer, token, `${prefix}ingest-${r}`);
      await curlUpload(peer, token, record.id, source);
      return record.id;
    });
    runs.glanceIngest.push(glanceRun);
    if (r === 0) glanceId = glanceRun.value;
    else await glance(peer, token, 'DELETE', `/v2/images/${glanceRun.value}`);
  }
  const stored = await glance(peer, token, 'GET', `/v2/images/${glanceId}`);
  if (stored.checksum !== kept.visor.checksums.md5 || stored.size !== bytes)
    throw new Error(`Glance stored something else (md5 ${stored.checksum}, size ${stored.size})`);

  for (let r = 0; r < downloadRepeat; r++) {
    log(`  download round ${r + 1}/${downloadRepeat}`);
    for (const v of variants) {
      const pids = () => [v.server.pid];
      const id = String(kept[v.key]._id);
      runs[`${v.key}Download`].push(
        await measure(pids, async () => {
          const { stream } = await v.client.download(id);
          await pipeline(stream, discard());
        }),
      );
      runs[`${v.key}CurlDownload`].push(await measure(pids, () => v.kit.curlDownload(v.server.url, v.user, id)));
    }
    runs.glanceDownload.push(await measure(glancePids, () => glanceDownload(peer, token, glanceId)));
  }
  // The same downloads from a `visor serve` started afresh on the same data: a server that has just
  // taken in gigabytes can be in another garbage-collection regime than a new one.
  for (const v of variants) {
    log(`  downloads from a fresh ${v.key} server`);
    const fresh = await v.kit.startServer(v.config);
    try {
      for (let r = 0; r < downloadRepeat; r++)
        runs[`${v.key}FreshCurlDownload`].push(
          await measure(
            () => [fresh.pid],
            () => v.kit.curlDownload(fresh.url, v.user, String(kept[v.key]._id)),
          ),
        );
    } finally {
      await fresh.stop();
    }
  }
  await glance(peer, token, 'DELETE', `/v2/images/${glanceId}`);

  const out = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, summarise(bytes, v)]));
  out.ingestPeakRssMiB = peakRss;
  /** The image each variant keeps in its catalog (tagged for the push). */
  out.images = kept;
  return out;
}
