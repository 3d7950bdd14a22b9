// What the figures were taken on: CPU, cores, RAM, kernel, node, the disk under the bench's files,
// and how busy the machine was (the figures are only as good as the quiet they were taken in).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { sleep } from './util.mjs';

const sh = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
};

export function machine(dir) {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.split(' ') ?? [];
  const hashFlags = ['sha_ni', 'avx2', 'avx512f'].filter((f) => flags.includes(f));
  const [source, fstype, size] =
    sh('df', ['--output=source,fstype,size', '-h', dir]).split('\n').pop()?.trim().split(/\s+/) ?? [];
  const device = source?.replace(/^\/dev\//, '').replace(/[0-9]+$/, '');
  const rotational = device ? sh('cat', [`/sys/block/${device}/queue/rotational`]) : '';
  const virt = sh('systemd-detect-virt', []) || (flags.includes('hypervisor') ? 'a hypervisor' : 'none');
  const kinds = { 0: 'non-rotational', 1: 'rotational' };
  return {
    cpu,
    hashFlags,
    cores: os.cpus().length,
    ramGiB: os.totalmem() / 1024 ** 3,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    os: /^PRETTY_NAME="?(.*?)"?$/m.exec(sh('cat', ['/etc/os-release']))?.[1] ?? '',
    virtualization: virt,
    disk: `${source} (${fstype}, ${size}, ${kinds[rotational] ?? 'type unknown'}) under ${dir}`,
  };
}

/** Load averages and the busiest other processes right now. */
export function load() {
  const [one, five, fifteen] = os.loadavg();
  const top = sh('ps', ['-eo', 'pcpu,comm', '--sort=-pcpu', '--no-headers'])
    .split('\n')
    .slice(0, 5)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('0.0'));
  return { one, five, fifteen, top };
}

/**
 * Waits (up to `maxWaitMs`) for the 1-minute load to fall below `threshold`: figures taken on a
 * busy shared machine measure the neighbours. Returns the load seen when it went on.
 */
export async function waitForQuiet({ threshold, maxWaitMs, log }) {
  const deadline = Date.now() + maxWaitMs;
  let current = load();
  while (current.one >= threshold && Date.now() < deadline) {
    log(
      `load ${current.one.toFixed(2)} ≥ ${threshold}: waiting for a quieter machine ` +
        `(${Math.round((deadline - Date.now()) / 1000)} s left; busiest: ${current.top.slice(0, 3).join(', ')})`,
    );
    await sleep(30_000);
    current = load();
  }
  return { ...current, quiet: current.one < threshold };
}
