// Transfer benchmark: a 1 GiB image uploaded to and downloaded from the image service API
// (signed requests, file store, md5+sha256+sha512 computed on ingest), side by side with `cp`
// of the same file, in the same run. Prints MB/s and the server's peak RSS.
// Run: npm run build && node bench/transfer.mjs   (BENCH_SIZE_MIB=1024 by default)
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { VisorClient } from '../dist/agent/client/client.js';

const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'visor-bench-transfer-'));
const bin = new URL('../dist/bundle/cli.js', import.meta.url).pathname;
const source = join(dir, 'image.raw');
const mib = (bytes, seconds) => bytes / 1024 / 1024 / seconds;
const time = async (fn) => {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

// Random content (incompressible), written once and read once so that it sits in the page cache
// for every contestant alike.
execFileSync('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${sizeMiB}`, 'status=none']);
execFileSync('cat', [source], { stdio: ['ignore', 'ignore', 'ignore'] });
const bytes = statSync(source).size;

const fsyncFile = async (path) => {
  const handle = await open(path, 'r');
  await handle.sync();
  await handle.close();
};
const cpSeconds = await time(async () => execFileSync('cp', [source, join(dir, 'cp.raw')]));
const cpSyncSeconds = await time(async () => {
  execFileSync('cp', [source, join(dir, 'cp-sync.raw')]);
  await fsyncFile(join(dir, 'cp-sync.raw'));
});
rmSync(join(dir, 'cp.raw'));
rmSync(join(dir, 'cp-sync.raw'));

// The server, as users run it, in its own process (so that its RSS is its own).
const data = join(dir, 'data');
const user = JSON.parse(
  execFileSync(process.execPath, [bin, 'users', 'add', 'bench', '--admin', '--data-dir', data, '--json'], {
    encoding: 'utf8',
  }),
);
const server = spawn(process.execPath, [bin, 'serve', '--data-dir', data, '--port', '0'], {
  stdio: ['ignore', 'ignore', 'pipe'],
  env: { ...process.env, VISOR_DATA_DIR: '' },
});
let url;
for await (const line of createInterface({ input: server.stderr })) {
  const match = /"url":"(http:[^"]+)"/.exec(line);
  if (match) {
    url = match[1];
    break;
  }
}
server.stderr.resume();
const peakRss = () => {
  const status = readFileSync(`/proc/${server.pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024;
};
const rssBefore = peakRss();
const client = new VisorClient({ url, accessKey: user.accessKey, secretKey: user.secretKey, source: 'bench' });

let image;
const uploadSeconds = await time(async () => {
  image = await client.add(
    { name: 'bench', architecture: 'x86_64', format: 'raw' },
    { stream: createReadStream(source, { highWaterMark: 1024 * 1024 }), size: bytes },
  );
});
const rssAfterUpload = peakRss();
const downloadSeconds = await time(async () => {
  const { stream } = await client.download(String(image._id));
  await pipeline(stream, createWriteStream('/dev/null'));
});
const rssAfterDownload = peakRss();
server.kill('SIGTERM');
await new Promise((r) => server.once('exit', r));
rmSync(dir, { recursive: true, force: true });

const up = mib(bytes, uploadSeconds);
const down = mib(bytes, downloadSeconds);
const cp = mib(bytes, cpSeconds);
const cpSync = mib(bytes, cpSyncSeconds);
console.log(
  `transfer benchmark: ${sizeMiB} MiB of random data, ` +
    `node ${process.version}, ${(await import('node:os')).cpus().length} cores`,
);
console.log(`  cp (page cache)                ${cp.toFixed(0).padStart(6)} MiB/s`);
console.log(`  cp + fsync                     ${cpSync.toFixed(0).padStart(6)} MiB/s`);
console.log(
  `  API upload (ingest)            ${up.toFixed(0).padStart(6)} MiB/s   ` +
    `= ${(up / cp).toFixed(2)}x cp, ${(up / cpSync).toFixed(2)}x cp+fsync`,
);
console.log(`  API download                   ${down.toFixed(0).padStart(6)} MiB/s   = ${(down / cp).toFixed(2)}x cp`);
console.log(
  `  server peak RSS                ${rssBefore.toFixed(0)} MiB at start, ${rssAfterUpload.toFixed(0)} MiB ` +
    `after upload, ${rssAfterDownload.toFixed(0)} MiB after download`,
);
