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
import { curlGet, curlPut, startBareNode, startNginx } from '../lib/ceilings.mjs';
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

/**
 * Writing into the page cache costs several times more CPU when the memory was idle for a few
 * seconds (on these VMs the host takes idle guest pages back) than right after other writes. Every
 * ingest and every download into a file starts "warm": 1 GiB written and deleted just before (and
 * the previous contestant's output deleted), so that all of them find memory in the same state —
 * before, an ingest that followed a read-only step (the digests' read-back) found it cold and paid
 * twice the kernel time of one that followed a write.
 */
async function warmPageCache(dir, bytes) {
  const scratch = join(dir, 'warm.raw');
  await runMeasured('dd', [
    'if=/dev/zero',
    `of=${scratch}`,
    'bs=4M',
    `count=${Math.ceil(bytes / (4 * 1024 * 1024))}`,
    'status=none',
  ]);
  rmSync(scratch, { force: true });
}

/** Waits until the image's md5 and sha512 are recorded (at once for builds that compute them in the upload). */
async function digestsDone(client, image) {
  const pending = image.checksums_pending !== undefined;
  let current = image;
  while (current.checksums_pending !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    current = await client.meta(String(image._id));
  }
  if (current.status !== 'available') throw new Error(`image ${image._id} is ${current.status} after its digests`);
  return { image: current, pending };
}

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
  const runs = {
    cp: [],
    cpFsync: [],
    glanceIngest: [],
    glanceDownload: [],
    bareIngest: [],
    bareDownload: [],
    nginxDownload: [],
    glanceFile: [],
    visorGetFile: [],
    openstackSave: [],
    visorAddFile: [],
    openstackCreate: [],
  };
  for (const v of variants)
    for (const k of ['Ingest', 'CurlIngest', 'Digests', 'Download', 'CurlDownload', 'FreshCurlDownload'])
      runs[`${v.key}${k}`] = [];
  const kept = {};
  const peakRss = {};
  let glanceId;
  // The CLIs run against the build under test, as a user runs them (its keys in the environment).
  const visor = variants[0];
  const env = {
    ...process.env,
    VISOR_URL: visor.server.url,
    VISOR_ACCESS_KEY: visor.user.accessKey,
    VISOR_SECRET_KEY: visor.user.secretKey,
  };
  // The ceilings: nginx sendfile and a minimal Node server, both serving the same source file.
  const nginx = await startNginx(dir, source);
  const bare = await startBareNode(dir, source);
  try {
    for (let r = 0; r < repeat; r++) {
      log(`  ingest round ${r + 1}/${repeat}`);
      const copy = join(dir, 'cp.raw');
      await warmPageCache(dir, bytes);
      const cp = await runMeasured('cp', [source, copy]);
      runs.cp.push({ seconds: cp.seconds, serverCpu: cp.cpuSeconds, serverSys: 0, clientCpu: 0 });
      rmSync(copy);
      await warmPageCache(dir, bytes);
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
      // A minimal Node server taking the PUT into a file and fsyncing it: what Node allows here.
      await warmPageCache(dir, bytes);
      runs.bareIngest.push(
        await measure(
          () => [bare.pid],
          () => curlPut(`${bare.url}/upload`, source),
        ),
      );

      for (const v of variants) {
        const pids = () => [v.server.pid];
        const rssReset = resetPeakRss(v.server.pid);
        await warmPageCache(dir, bytes);
        const viaClient = await measure(pids, () =>
          v.client.add(meta(r === 0 ? v.tag : undefined), {
            stream: createReadStream(source, { highWaterMark: 1024 * 1024 }),
            size: bytes,
          }),
        );
        peakRss[v.key] = Math.max(peakRss[v.key] ?? 0, rssReset ? peakRssOf(v.server.pid) : 0);
        runs[`${v.key}Ingest`].push(viaClient);
        // md5 and sha512 follow off the request path (builds since issue 27): timed on their own,
        // and waited for, so that they never run beside the next contestant.
        const digests = await measure(pids, () => digestsDone(v.client, viaClient.value));
        if (digests.value.pending) runs[`${v.key}Digests`].push(digests);
        viaClient.value = digests.value.image;
        if (r === 0) kept[v.key] = viaClient.value;
        else await v.client.delete(String(viaClient.value._id));

        const curlMeta = { name: `${prefix}curl-ingest`, architecture: 'x86_64', format: 'raw' };
        const sha256 = kept[v.key].checksums.sha256;
        await warmPageCache(dir, bytes);
        const viaCurl = await measure(pids, () =>
          v.kit.curlIngest(v.server.url, v.user, source, bytes, curlMeta, sha256),
        );
        runs[`${v.key}CurlIngest`].push(viaCurl);
        await digestsDone(v.client, viaCurl.value);
        if (viaCurl.value.checksums?.sha256 !== kept[v.key].checksums.sha256)
          throw new Error('visor stored different bytes through curl than through its client');
        await v.client.delete(String(viaCurl.value._id));
      }

      // Glance: the record first (as every Glance upload needs one), then the bits.
      await warmPageCache(dir, bytes);
      const glanceRun = await measure(glancePids, async () => {
        const record = await createRecord(peer, token, `${prefix}ingest-${r}`);
        await curlUpload(peer, token, record.id, source);
        return record.id;
      });
      runs.glanceIngest.push(glanceRun);
      if (r === 0) glanceId = glanceRun.value;
      else await glance(peer, token, 'DELETE', `/v2/images/${glanceRun.value}`);

      // The upload a user types: `visor add --file` (start-up, its sha256 and the upload included)
      // vs `openstack image create --file`, each CLI a process of its own, timed from start to exit.
      const addArgs = [`name=${prefix}add-file-${r}`, 'architecture=x86_64', 'format=raw', '--file', source, '--json'];
      await warmPageCache(dir, bytes);
      const added = await measure(
        () => [visor.server.pid],
        () => runMeasured(process.execPath, [visor.kit.bin, 'add', ...addArgs], { env }),
      );
      runs.visorAddFile.push({ ...added, clientCpu: added.value.cpuSeconds });
      const addedImage = JSON.parse(added.value.stdout);
      if (addedImage.checksums?.sha256 !== kept.visor.checksums.sha256)
        throw new Error('`visor add --file` stored different bytes than the API client');
      await digestsDone(visor.client, addedImage);
      await visor.client.delete(String(addedImage._id));
      const createArgs = ['--file', source, '--disk-format', 'raw', '--container-format', 'bare'];
      await warmPageCache(dir, bytes);
      const created = await measure(glancePids, () =>
        runMeasured(
          'openstack',
          ['image', 'create', ...createArgs, '-f', 'value', '-c', 'id', `${prefix}osc-create-${r}`],
          { env: { ...process.env, ...peer.openrc } },
        ),
      );
      runs.openstackCreate.push({ ...created, clientCpu: created.value.cpuSeconds });
      await glance(peer, token, 'DELETE', `/v2/images/${created.value.stdout.trim()}`);
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
      runs.nginxDownload.push(
        await measure(
          () => [nginx.pid],
          () => curlGet(`${nginx.url}/file`),
        ),
      );
      runs.bareDownload.push(
        await measure(
          () => [bare.pid],
          () => curlGet(`${bare.url}/file`),
        ),
      );
    }
  } finally {
    await nginx.stop();
    await bare.stop();
  }

  // Downloads into a file, as a user makes them: `visor get -o FILE` (start-up, the sha256 check
  // and the file included) against `curl -o FILE` and `openstack image save` from Glance.
  const target = join(dir, 'downloaded.raw');
  for (let r = 0; r < downloadRepeat; r++) {
    log(`  download into a file, round ${r + 1}/${downloadRepeat}`);
    const contestants = [
      [
        'visorGetFile',
        [visor.server.pid],
        () =>
          runMeasured(process.execPath, [visor.kit.bin, 'get', String(kept.visor._id), '-o', target, '--force'], {
            env,
          }),
      ],
      [
        'glanceFile',
        glancePids(),
        () =>
          runMeasured('curl', [
            '-sS',
            '-f',
            '-o',
            target,
            '-H',
            `X-Auth-Token: ${token}`,
            `${peer.glanceUrl}/v2/images/${glanceId}/file`,
          ]),
      ],
      [
        'openstackSave',
        glancePids(),
        () =>
          runMeasured('openstack', ['image', 'save', '--file', target, glanceId], {
            env: { ...process.env, ...peer.openrc },
          }),
      ],
    ];
    for (const [key, pids, fn] of contestants) {
      rmSync(target, { force: true });
      await warmPageCache(dir, bytes);
      const m = await measure(() => pids, fn);
      runs[key].push({ ...m, clientCpu: m.value.cpuSeconds, clientRssMiB: m.value.peakRssMiB });
    }
    rmSync(target, { force: true });
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
  out.visorGetFile.peakRssMiB = Math.max(...runs.visorGetFile.map((r) => r.clientRssMiB));
  out.nginxVersion = nginx.version;
  /** The image each variant keeps in its catalog (tagged for the push). */
  out.images = kept;
  return out;
}
