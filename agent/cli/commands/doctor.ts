import type { Command } from 'commander';
import { VisorError } from '../../../core/errors.js';
import { ExitCode } from '../exit-codes.js';
import { print, printJson, type CliIo } from '../io.js';
import { type RuntimeFlags, runtimeOptions, withRuntimeFlags } from '../options.js';

/** Exit codes by the worst verdict: scripts and monitoring can tell a warning from a failure. */
const exitCodes = { ok: ExitCode.ok, warn: ExitCode.partial, fail: ExitCode.failure } as const;

export function doctorCommand(program: Command, io: CliIo): void {
  withRuntimeFlags(
    program
      .command('doctor')
      .description(
        'check everything the config names, in parallel, each with a deadline: data folder and key, catalog, ' +
          'each store (write, read, delete), each cloud (listing, credentials, clock), qemu-img ' +
          '(exit 0: all ok, 3: warnings, 1: failures)',
      ),
    io,
  )
    .option('--timeout <seconds>', 'deadline of each check', '15')
    .action(async (flags: RuntimeFlags & { timeout: string }) => {
      const seconds = Number(flags.timeout);
      if (!(seconds > 0 && seconds <= 600))
        throw new VisorError('invalidInput', `--timeout must be 1-600 seconds, got "${flags.timeout}"`);
      const { loadSetup, openRuntime } = await import('../../runtime/open-runtime.js');
      const { silentLogger } = await import('../../../core/logging/logger.js');
      const { runDoctor } = await import('../../doctor/doctor.js');
      const { worst } = await import('../../doctor/check.js');
      let setup: Awaited<ReturnType<typeof loadSetup>>;
      try {
        setup = await loadSetup({ ...runtimeOptions(flags, io), logger: silentLogger });
      } catch (error) {
        // The config is the first check: nothing else can be checked without it.
        const detail = error instanceof Error ? error.message : String(error);
        const result = {
          check: 'config',
          verdict: 'fail' as const,
          detail,
          fix: 'visor config validate -c FILE',
          ms: 0,
        };
        report(io, flags.json === true, [result]);
        process.exitCode = exitCodes.fail;
        return;
      }
      const runtime = await openRuntime({ setup });
      try {
        const file = setup.config.file ?? 'the embedded default configuration';
        const results = [
          { check: 'config', verdict: 'ok' as const, detail: file, ms: 0 },
          ...(await runDoctor(runtime, seconds * 1000)),
        ];
        report(io, flags.json === true, results);
        process.exitCode = exitCodes[worst(results)];
      } finally {
        // A part that failed to open (already reported above) fails its close again: nothing to add.
        await runtime.close().catch(() => undefined);
      }
    });
}

interface Line {
  check: string;
  verdict: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
  ms: number;
}

function report(io: CliIo, json: boolean, results: readonly Line[]): void {
  if (json) {
    printJson(io, {
      verdict: results.some((r) => r.verdict === 'fail')
        ? 'fail'
        : results.some((r) => r.verdict === 'warn')
          ? 'warn'
          : 'ok',
      checks: results,
    });
    return;
  }
  const width = Math.max(...results.map((r) => r.check.length));
  for (const r of results) {
    const fix = r.verdict === 'ok' || !r.fix ? '' : `\n${' '.repeat(width + 8)}-> ${r.fix}`;
    print(io, `${r.verdict.padEnd(4)}  ${r.check.padEnd(width)}  ${r.detail}${fix}`);
  }
}
