import { spawn, type StdioOptions } from 'node:child_process';
import { z } from 'zod';
import { isVisorError, VisorError } from '../errors.js';
import type { DiskFormat } from '../image/model.js';

/** qemu-img's name for each disk format it reads; ISOs and AMI/AKI/ARI files are read as raw bytes. */
const readNames: Partial<Record<DiskFormat, string>> = {
  raw: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vhd: 'vpc',
  vhdx: 'vhdx',
  vdi: 'vdi',
  ploop: 'parallels',
  iso: 'raw',
  ami: 'raw',
  aki: 'raw',
  ari: 'raw',
};
/** Formats qemu-img writes (an AMI machine image is a raw disk). */
const writeNames: Partial<Record<DiskFormat, string>> = {
  raw: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vhd: 'vpc',
  vhdx: 'vhdx',
  vdi: 'vdi',
  ploop: 'parallels',
  ami: 'raw',
};

export const installHint =
  'qemu-img is not installed: install the Debian package qemu-utils (apt-get install qemu-utils)';

export function qemuReadFormat(format: DiskFormat): string {
  const name = readNames[format];
  if (!name) throw new VisorError('unsupported', `qemu-img cannot read disk format ${format}`);
  return name;
}

export function qemuWriteFormat(format: DiskFormat): string {
  const name = writeNames[format];
  if (!name) throw new VisorError('unsupported', `qemu-img cannot write disk format ${format}`);
  return name;
}

export interface QemuImgOptions {
  /** The qemu-img executable (default: `qemu-img` on the PATH). */
  qemuImg?: string;
  signal?: AbortSignal;
  /** Kills qemu-img after this long; 0 for no limit. */
  timeoutMs?: number;
  /** Open file descriptors handed to qemu-img as its fd 3, 4, ...: reachable as /dev/fd/N. */
  fds?: number[];
}

export interface QemuImgResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs qemu-img with arguments as given (no shell). A missing executable is `unsupported` with
 * the install hint; a non-zero exit is an `invalidInput` error carrying qemu-img's own message
 * (`unavailable` when the disk is full); an abort or timeout ends qemu-img before returning.
 */
export function runQemuImg(args: string[], options: QemuImgOptions = {}): Promise<QemuImgResult> {
  const executable = options.qemuImg ?? 'qemu-img';
  const stdio: StdioOptions = ['ignore', 'pipe', 'pipe', ...(options.fds ?? [])];
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortError(options.signal, args));
      return;
    }
    const child = spawn(executable, args, { stdio, env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let failure: VisorError | undefined;
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    const kill = (error: VisorError) => {
      failure ??= error;
      child.kill('SIGTERM');
      // qemu-img exits on SIGTERM; SIGKILL only if it does not within a few seconds.
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    };
    const onAbort = () => kill(abortError(options.signal!, args));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = options.timeoutMs
      ? setTimeout(
          () => kill(new VisorError('timeout', `qemu-img ${args[0] ?? ''} took longer than ${options.timeoutMs} ms`)),
          options.timeoutMs,
        )
      : undefined;
    child.on('error', (error: NodeJS.ErrnoException) => {
      failure ??=
        error.code === 'ENOENT'
          ? new VisorError('unsupported', installHint, { cause: error })
          : new VisorError('internal', `cannot run qemu-img: ${error.message}`, { cause: error });
    });
    child.on('close', (code, signal) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (timer) clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8').trim();
      if (failure) reject(failure);
      else if (code === 0) resolve({ stdout, stderr });
      else {
        const message =
          stderr
            .split('\n')
            .slice(-3)
            .join(' ')
            .replace(/^qemu-img: /, '') || `exit ${code ?? signal}`;
        const kind = /No space left on device|Disk quota exceeded/i.test(stderr) ? 'unavailable' : 'invalidInput';
        reject(
          new VisorError(kind, `qemu-img ${args[0] ?? ''} failed: ${message}`, { details: { exitCode: code, signal } }),
        );
      }
    });
  });
}

function abortError(signal: AbortSignal, args: string[]): VisorError {
  if (isVisorError(signal.reason)) return signal.reason;
  return new VisorError('unavailable', `qemu-img ${args[0] ?? ''} aborted`, { cause: signal.reason });
}

const infoSchema = z.looseObject({
  'virtual-size': z.number().int().nonnegative(),
  format: z.string(),
  'actual-size': z.number().int().nonnegative().optional(),
  'cluster-size': z.number().int().positive().optional(),
  'dirty-flag': z.boolean().optional(),
  'backing-filename': z.string().optional(),
  'format-specific': z.looseObject({ type: z.string(), data: z.record(z.string(), z.unknown()) }).optional(),
});

export type QemuImgInfo = z.infer<typeof infoSchema>;

/**
 * `qemu-img info --output=json -f <format>`: the format is always given, never probed. Inspect
 * the file first (inspectImage): qemu-img parses the headers it is pointed at.
 */
export async function qemuImgInfo(
  path: string,
  format: DiskFormat,
  options: QemuImgOptions = {},
): Promise<QemuImgInfo> {
  const { stdout } = await runQemuImg(['info', '--output=json', '-f', qemuReadFormat(format), path], {
    timeoutMs: 30_000,
    ...options,
  });
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (error) {
    throw new VisorError('invalidResponse', `qemu-img info printed no JSON for ${path}`, { cause: error });
  }
  const parsed = infoSchema.safeParse(json);
  if (!parsed.success)
    throw new VisorError(
      'invalidResponse',
      `qemu-img info for ${path}: unexpected output (${parsed.error.issues[0]?.message ?? ''})`,
    );
  return parsed.data;
}
