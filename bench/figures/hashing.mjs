// What hashing costs on this CPU: the ceiling under every ingest figure. visor stores md5, sha256
// and sha512 of every image; Glance computes md5 and sha512 (os_hash_algo) in Python.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { dist } from '../lib/dist.mjs';
import { MiB, mibps, selfCpuSeconds, timed } from '../lib/util.mjs';

const { DigestStream } = await import(`${dist}/core/transfer/digest.js`);
const { ParallelDigestStream } = await import(`${dist}/core/transfer/parallel-digest.js`).catch(() => ({}));

const block = () => {
  const b = Buffer.alloc(MiB);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
};

const python = `
import hashlib, sys, time
b = bytes(range(256)) * 4096
n = int(sys.argv[1])
for a in ('md5', 'sha256', 'sha512'):
    h = hashlib.new(a); t = time.perf_counter()
    for _ in range(n): h.update(b)
    h.hexdigest(); print(a, n / (time.perf_counter() - t))
`;

async function streamThroughput(make, mib) {
  const data = block();
  let left = mib;
  const source = new Readable({
    read() {
      this.push(left-- > 0 ? data : null);
    },
  });
  const cpu0 = selfCpuSeconds();
  const { seconds } = await timed(() => pipeline(source, make(), new Writable({ write: (_c, _e, cb) => cb() })));
  return { mibps: mibps(mib * MiB, seconds), cpuPerGiB: ((selfCpuSeconds() - cpu0) / mib) * 1024 };
}

export async function hashingFigures({ mib = 512 } = {}) {
  const data = block();
  const node = {};
  for (const algorithm of ['md5', 'sha256', 'sha512']) {
    const hash = createHash(algorithm);
    const { seconds } = await timed(async () => {
      for (let i = 0; i < mib; i++) hash.update(data);
      hash.digest();
    });
    node[algorithm] = mib / seconds;
  }
  const py = Object.fromEntries(
    execFileSync('python3', ['-c', python, String(mib)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((l) => l.split(' '))
      .map(([a, v]) => [a, Number(v)]),
  );
  return {
    node,
    python: py,
    digestStream: await streamThroughput(() => new DigestStream(), mib),
    ...(ParallelDigestStream
      ? { parallelDigestStream: await streamThroughput(() => new ParallelDigestStream(), mib) }
      : {}),
  };
}
