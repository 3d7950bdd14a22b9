// Small helpers shared by the benchmarks: timing, child processes with their peak RSS, sizes.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const execFileAsync = promisify(execFile);

export const now = () => process.hrtime.bigint();
export const secondsSince = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

/** Runs `fn` and returns its result and how long it took, in seconds. */
export async function timed(fn) {
  const t0 = now();
  const value = await fn();
  return { value, seconds: secondsSince(t0) };
}

export const mibps = (bytes, seconds) => bytes / MiB / seconds;

/**
 * Runs a command under GNU time: wall seconds, CPU seconds and the peak RSS of the process
 * (ru_maxrss of the waited child, so exact, not sampled). Rejects on a non-zero exit, with its stderr.
 */
export async function runMeasured(command, args, options = {}) {
  const stats = `/tmp/visor-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const t0 = now();
  const { code, stdout, stderr } = await new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%e %M %U %S', '-o', stats, command, ...args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
  });
  const seconds = secondsSince(t0);
  const [, maxRssKb, user, system] = readFileSync(stats, 'utf8').trim().split('\n').pop().split(' ');
  rmSync(stats, { force: true });
  if (code !== 0 && !options.allowFailure)
    throw new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr.slice(-2000)}`);
  return {
    code,
    stdout,
    stderr,
    seconds,
    peakRssMiB: Number(maxRssKb) / 1024,
    cpuSeconds: Number(user) + Number(system),
  };
}

/** Peak RSS (VmHWM) of a running process, in MiB. */
export function peakRssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024;
}

/**
 * Resets a process's VmHWM to its current RSS (Linux: writing 5 to clear_refs), so that a peak can be taken per phase.
 */
export function resetPeakRss(pid) {
  try {
    execFileSync('sh', ['-c', `echo 5 > /proc/${pid}/clear_refs`]);
    return true;
  } catch {
    return false;
  }
}

export const fmt = {
  mibps: (v) => `${v.toFixed(0)} MiB/s`,
  s: (v) => (v < 10 ? `${v.toFixed(2)} s` : `${v.toFixed(1)} s`),
  ms: (v) => (v < 10 ? `${v.toFixed(2)} ms` : `${v.toFixed(0)} ms`),
  x: (v) => `${v.toFixed(2)}×`,
  mib: (v) => `${v.toFixed(0)} MiB`,
  rps: (v) => `${v.toFixed(0)} req/s`,
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A process and its descendants (children first found through /proc/<pid>/task/<tid>/children). */
export function processTree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const children = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (children) out.push(...children.split(/\s+/).map(Number));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const ticksPerSecond = 100;

/** CPU seconds (user + system, all threads) used so far by these processes. */
export function cpuSecondsOf(pids) {
  const { user, system } = cpuTimesOf(pids);
  return user + system;
}

/** User and system (kernel) CPU seconds, all threads, used so far by these processes. */
export function cpuTimesOf(pids) {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += Number(fields[11]);
      system += Number(fields[12]);
    } catch {
      // gone meanwhile
    }
  }
  return { user: user / ticksPerSecond, system: system / ticksPerSecond };
}

/** CPU seconds of this process (all threads, the hashing workers included). */
export const selfCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Median of a list of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
