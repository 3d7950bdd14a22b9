// Push of a catalog image into Glance: `visor sync` (the CLI, a process of its own, timed from
// start to exit, peak RSS from the kernel) side by side with what an operator does by hand — a
// raw `curl -T` into a fresh record, and `openstack image save` + `openstack image create`.
import { createReadStream, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { deleteImagesNamed, glance } from '../lib/glance.mjs';
import { median, mibps, peakRssOf, resetPeakRss, runMeasured, timed } from '../lib/util.mjs';

/** One `visor sync` of the cloud: wall time, peak RSS, and what the run record says about its stages. */
export async function visorSync(kit, config, { expectBytes }) {
  const result = await runMeasured(process.execPath, [kit.bin, 'sync', '-c', config, '--json']);
  const { runs } = JSON.parse(result.stdout);
  const run = runs[0];
  const created = run.actions.filter((a) => a.result === 'created');
  if (run.status !== 'succeeded' || created.length !== 1 || created[0].bytes !== expectBytes) {
    throw new Error(`visor sync did not push the image: ${JSON.stringify(run).slice(0, 1000)}`);
  }
  return {
    seconds: result.seconds,
    peakRssMiB: result.peakRssMiB,
    runSeconds: (Date.parse(run.finishedAt) - Date.parse(run.startedAt)) / 1000,
    actionSeconds: created[0].ms / 1000,
    nativeId: created[0].nativeId,
  };
}

/** Token, record and `curl -T`, as one shell script: everything a hand-made push needs. */
// The JSON bodies are built in shell variables (expanding the OS_* and NAME variables) and
// the long commands continue over lines; the steps are the same four requests.
const curlPushScript = String.raw`set -euo pipefail
AUTH="{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{"
AUTH+="\"name\":\"$OS_USERNAME\",\"domain\":{\"name\":\"$OS_USER_DOMAIN_NAME\"},\"password\":\"$OS_PASSWORD\"}}},"
AUTH+="\"scope\":{\"project\":{\"name\":\"$OS_PROJECT_NAME\",\"domain\":{\"name\":\"$OS_PROJECT_DOMAIN_NAME\"}}}}}"
TOKEN=$(curl -sS -f -i -X POST -H 'Content-Type: application/json' "$OS_AUTH_URL/auth/tokens" -d "$AUTH" \
  | awk -F': ' 'tolower($1)=="x-subject-token"{print $2}' | tr -d '\r')
IMAGE="{\"name\":\"$NAME\",\"disk_format\":\"raw\",\"container_format\":\"bare\",\"visibility\":\"private\"}"
ID=$(curl -sS -f -X POST -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' "$GLANCE_URL/v2/images" \
  -d "$IMAGE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sS -f -X PUT -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/octet-stream' -T "$FILE" \
  "$GLANCE_URL/v2/images/$ID/file"
echo "$ID"
`;

export async function curlPush(peer, file, name) {
  const result = await runMeasured('bash', ['-c', curlPushScript], {
    env: { ...process.env, ...peer.openrc, GLANCE_URL: peer.glanceUrl, NAME: name, FILE: file },
  });
  return { seconds: result.seconds, nativeId: result.stdout.trim().split('\n').pop() };
}

/** The openstack CLI's way: save the image from Glance to a file, create a new one from it. */
export async function openstackCopy(peer, dir, fromId, name) {
  const env = { ...process.env, ...peer.openrc };
  const saved = join(dir, 'saved.raw');
  const save = await runMeasured('openstack', ['image', 'save', '--file', saved, fromId], { env });
  const create = await runMeasured(
    'openstack',
    [
      'image',
      'create',
      '--disk-format',
      'raw',
      '--container-format',
      'bare',
      '--private',
      '--file',
      saved,
      '-f',
      'value',
      '-c',
      'id',
      name,
    ],
    { env },
  );
  rmSync(saved, { force: true });
  return {
    seconds: save.seconds + create.seconds,
    saveSeconds: save.seconds,
    createSeconds: create.seconds,
    peakRssMiB: Math.max(save.peakRssMiB, create.peakRssMiB),
    nativeId: create.stdout.trim(),
  };
}

export async function pushFigures({ dir, source, bytes, repeat, peer, token, prefix, variants, log }) {
  const runs = { curl: [], openstack: [] };
  for (const v of variants) runs[v.key] = [];
  for (let r = 0; r < repeat; r++) {
    log(`  push round ${r + 1}/${repeat}`);
    for (const v of variants) {
      const synced = await visorSync(v.kit, v.config, { expectBytes: bytes });
      const copy = await glance(peer, token, 'GET', `/v2/images/${synced.nativeId}`);
      if (copy.checksum !== v.image.checksums.md5 || copy.os_hash_value !== v.image.checksums.sha512)
        throw new Error('the synced copy differs from the catalog image');
      runs[v.key].push(synced);
      // The next round must push again: the copy goes (behind visor's back, as in a fresh cloud).
      await glance(peer, token, 'DELETE', `/v2/images/${synced.nativeId}`);
    }
    const curled = await curlPush(peer, source, `${prefix}curl-push-${r}`);
    runs.curl.push(curled);
    runs.openstack.push(await openstackCopy(peer, dir, curled.nativeId, `${prefix}openstack-push-${r}`));
    await deleteImagesNamed(peer, token, `${prefix}curl-push-`);
    await deleteImagesNamed(peer, token, `${prefix}openstack-push-`);
  }
  const pick = (list, key) => median(list.map((x) => x[key]));
  const out = {
    curl: {
      seconds: pick(runs.curl, 'seconds'),
      runs: runs.curl.map((x) => x.seconds),
      mibps: mibps(bytes, pick(runs.curl, 'seconds')),
    },
    openstack: {
      seconds: pick(runs.openstack, 'seconds'),
      runs: runs.openstack.map((x) => x.seconds),
      saveSeconds: pick(runs.openstack, 'saveSeconds'),
      createSeconds: pick(runs.openstack, 'createSeconds'),
      peakRssMiB: Math.max(...runs.openstack.map((x) => x.peakRssMiB)),
      mibps: mibps(bytes, pick(runs.openstack, 'seconds')),
    },
  };
  for (const v of variants) {
    const list = runs[v.key];
    out[v.key] = {
      seconds: pick(list, 'seconds'),
      runs: list.map((x) => x.seconds),
      mibps: mibps(bytes, pick(list, 'seconds')),
      peakRssMiB: Math.max(...list.map((x) => x.peakRssMiB)),
      runSeconds: pick(list, 'runSeconds'),
      actionSeconds: pick(list, 'actionSeconds'),
    };
  }
  return out;
}

/**
 * A big image (the source file `times` over) into the catalog through the API, then `visor sync` of it: peak RSS of the
 * syncing process.
 */
export async function bigSyncFigure({ variant: v, source, bytes, times, peer, token, log }) {
  const size = bytes * times;
  const stream = Readable.from(
    (async function* () {
      for (let i = 0; i < times; i++) yield* createReadStream(source, { highWaterMark: 1024 * 1024 });
    })(),
  );
  log(`  ingest of ${times} × the source (${(size / 1024 ** 3).toFixed(0)} GiB) through the API`);
  const rssReset = resetPeakRss(v.server.pid);
  const ingest = await timed(() =>
    v.client.add({ name: `big-${times}`, architecture: 'x86_64', format: 'raw', tags: v.bigTag }, { stream, size }),
  );
  const serverPeakRssMiB = rssReset ? peakRssOf(v.server.pid) : undefined;
  // Its md5 and sha512 follow off the request path: the sync starts once they are recorded.
  for (let image = ingest.value; image.checksums_pending !== undefined; ) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    image = await v.client.meta(String(ingest.value._id));
  }
  log('  visor sync of it');
  const synced = await visorSync(v.kit, v.bigConfig, { expectBytes: size });
  await glance(peer, token, 'DELETE', `/v2/images/${synced.nativeId}`);
  await v.client.delete(String(ingest.value._id));
  return {
    bytes: size,
    ingestSeconds: ingest.seconds,
    ingestMibps: mibps(size, ingest.seconds),
    serverPeakRssMiB,
    sync: { ...synced, mibps: mibps(size, synced.seconds) },
  };
}
