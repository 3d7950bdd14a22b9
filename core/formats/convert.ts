import { mkdtemp, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { isVisorError, VisorError } from '../errors.js';
import type { DiskFormat } from '../image/model.js';
import { inspectImage } from './inspect.js';
import { qemuReadFormat, qemuWriteFormat, runQemuImg } from './qemu-img.js';
import { openFileReader } from './reader.js';
import type { InspectionReport } from './types.js';

export interface ConvertOptions {
  input: string;
  /** The input's disk format: given to qemu-img as `-f`, never probed. */
  from: DiskFormat;
  to: DiskFormat;
  output: string;
  signal?: AbortSignal;
  /** qemu-img `-o` options for the output, e.g. `{ subformat: 'streamOptimized' }` for vmdk. */
  outputOptions?: Record<string, string>;
  /** The qemu-img executable (default: `qemu-img` on the PATH). */
  qemuImg?: string;
}

export interface ConvertResult {
  output: string;
  format: DiskFormat;
  size: number;
  virtualSize?: number;
  /** What the inspection of the input found. */
  input: InspectionReport;
}

/**
 * Output options visor passes on. Options naming other files (backing_file, data_file) or keys
 * (encrypt.*) are not among them: an output must be as self-contained as an accepted input.
 */
const allowedOutputOptions = new Set([
  'subformat',
  'compat',
  'cluster_size',
  'preallocation',
  'lazy_refcounts',
  'refcount_bits',
  'compression_type',
  'extended_l2',
  'adapter_type',
  'hwversion',
  'toolsversion',
  'zeroed_grain',
  'force_size',
  'block_size',
  'block_state_zero',
  'log_size',
  'static',
]);

/**
 * Converts a disk image with `qemu-img convert -f <from> -O <to>`. The input is inspected first
 * and refused when unsafe (inspectImage); qemu-img then reads that same open file (passed as
 * /dev/fd/3, so the path cannot be swapped after the check) with its format stated, never
 * probed. The output is written in a hidden folder beside the target and renamed into place
 * once it passed inspection too; on failure or abort the partial output is removed.
 */
export async function convertImage(options: ConvertOptions): Promise<ConvertResult> {
  const { input, from, to, output, signal } = options;
  const readAs = qemuReadFormat(from);
  const writeAs = qemuWriteFormat(to);
  if (resolve(input) === resolve(output))
    throw new VisorError('invalidInput', `conversion input and output are the same file: ${input}`);
  const extra = outputOptionArgs(options.outputOptions);
  throwIfAborted(signal);

  const reader = await openFileReader(input);
  // A hidden folder beside the target holding a file of the target's own name: formats that
  // record their file name (a VMDK's extent line) record the final one, and the rename is atomic.
  let tempDir: string | undefined;
  try {
    const report = await inspectImage(reader, { declared: from });
    if (report.containerFormat !== 'bare')
      throw new VisorError('unsupported', `${input} is an OVA archive: extract its disk before converting it`);
    if (report.details['encrypted'] === true)
      throw new VisorError(
        'unsupported',
        `${input} is an encrypted qcow2 image, which visor cannot convert without its key`,
      );
    throwIfAborted(signal);
    tempDir = await mkdtemp(join(dirname(output), `.${basename(output)}.`));
    const temp = join(tempDir, basename(output));
    await runQemuImg(['convert', '-f', readAs, '-O', writeAs, ...extra, '/dev/fd/3', temp], {
      fds: [reader.handle.fd],
      ...(options.qemuImg ? { qemuImg: options.qemuImg } : {}),
      ...(signal ? { signal } : {}),
    });
    // The output passes the same inspection before it takes the target's name.
    const written = await openFileReader(temp);
    let result: InspectionReport;
    try {
      result = await inspectImage(written, { declared: to });
    } finally {
      await written.close();
    }
    await rename(temp, output);
    return {
      output,
      format: to,
      size: result.size,
      ...(result.virtualSize === undefined ? {} : { virtualSize: result.virtualSize }),
      input: report,
    };
  } catch (error) {
    if (isVisorError(error)) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    const kind =
      code === 'ENOSPC' || code === 'EDQUOT'
        ? 'unavailable'
        : ['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'EROFS', 'EISDIR'].includes(code)
          ? 'invalidInput'
          : 'internal';
    throw new VisorError(
      kind,
      `converting ${input} from ${from} to ${to} into ${output} failed: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
    await reader.close();
  }
}

function outputOptionArgs(options: Record<string, string> | undefined): string[] {
  if (!options || Object.keys(options).length === 0) return [];
  const pairs = Object.entries(options).map(([key, value]) => {
    // qemu-img splits -o on commas; a value with one could smuggle in another option.
    if (!allowedOutputOptions.has(key) || value.includes(',') || value === '')
      throw new VisorError(
        'invalidInput',
        `invalid qemu-img output option ${JSON.stringify(key)}=${JSON.stringify(value)}`,
      );
    return `${key}=${value}`;
  });
  return ['-o', pairs.join(',')];
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  if (isVisorError(signal.reason)) throw signal.reason;
  throw new VisorError('unavailable', 'conversion aborted', { cause: signal.reason });
}
