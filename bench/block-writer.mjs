// The file store's block writer alone (after `npm run build`): 1 GiB in 64 KiB chunks, each a fresh copy as
// Node's HTTP parser hands a request body over, written by writeInBlocks with its sha256 into TARGET
// (/dev/null by default: no page-cache noise). Prints wall time, the process's CPU-s (all threads) and the
// calling thread's own CPU-s, per round. `BENCH_DIST`: another build's dist/ (A/B, interleaved by hand).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const dist = resolve(process.env.BENCH_DIST ?? fileURLToPath(new URL('../dist', import.meta.url)));
const target = process.argv[2] ?? '/dev/null';
const rounds = Number(process.env.ROUNDS ?? 3);
const { writeInBlocks } = await import(`${dist}/core/transfer/block-file-writer.js`);
const total = 1024 ** 3;
const chunk = 64 * 1024;
const pool = randomBytes(64 * 1024 * 1024);

/** This thread's CPU-s (user + sys), from its own stat line. */
const threadCpu = () => {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

function source() {
  let at = 0;
  return new Readable({
    highWaterMark: 4 * chunk,
    read() {
      for (let i = 0; i < 4 && at < total; i++, at += chunk) {
        const from = at % pool.length;
        this.push(Buffer.from(pool.subarray(from, from + chunk)));
      }
      if (at >= total) this.push(null);
    },
  });
}

for (let round = 0; round < rounds; round++) {
  const handle = await open(target, target === '/dev/null' ? 'w' : 'wx');
  const thread0 = threadCpu();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await writeInBlocks(source(), handle, { algorithms: ['sha256'] });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const thread = threadCpu() - thread0;
  await handle.close();
  if (target !== '/dev/null') await rm(target);
  if (result.size !== total) throw new Error(`wrote ${result.size} bytes, not ${total}`);
  console.log(
    `round ${round}: ${seconds.toFixed(2)} s wall, process u${(cpu.user / 1e6).toFixed(2)} ` +
      `s${(cpu.system / 1e6).toFixed(2)} CPU-s, calling thread ${thread.toFixed(2)} CPU-s`,
  );
}
