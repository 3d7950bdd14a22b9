import type { Reporter, SerializedError, TestCase, TestModule, TestSuite } from 'vitest/node';
import { runCoordinator } from '../peers/coordinator.js';
import { peersRequired } from '../peers/peer.js';
import { summarize, type TestFact } from './run-summary.js';

/**
 * Ends every run with one summary: each peer (started or not, its version), the tests passed,
 * failed and skipped by reason, and the duration. Under VISOR_TEST_REQUIRE_PEERS=1 (CI) it also
 * decides: a skip not on the allowed list (allowed-skips.ts), or a peer that did not run, fails
 * the run (exit code 1) even when vitest itself passed.
 */
export default class RunReporter implements Reporter {
  private started = Date.now();

  onTestRunStart(): void {
    this.started = Date.now();
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>): void {
    const nameFilter = process.argv.some((a) => a === '-t' || a.startsWith('--testNamePattern'));
    const tests: TestFact[] = [];
    const failedFiles: Array<{ file: string; error: string }> = [];
    for (const module of testModules) {
      const file = module.moduleId.replace(`${process.cwd()}/`, '');
      for (const test of module.children.allTests()) {
        const result = test.result();
        const note = result.state === 'skipped' ? result.note : undefined;
        // Left out by a -t filter (or by .only elsewhere): mode skip, and no reason of its own.
        const filtered =
          result.state === 'skipped' && !note && test.options.mode === 'skip' && (nameFilter || hasOnly(module));
        // Not run because a beforeAll (or the file's import) failed: that failure is reported, not a skip.
        const state =
          result.state === 'skipped' && !note && !filtered && ancestorFailed(test) ? 'notRun' : result.state;
        tests.push({ id: `${file} > ${test.fullName}`, state, note, allowed: test.meta().allowedSkip, filtered });
      }
      const errors = [module, ...module.children.allSuites()].flatMap((s) => s.errors().map((e) => e.message));
      if (errors.length > 0) failedFiles.push({ file, error: errors.join('; ') });
    }
    const startedByScript = Number(process.env['VISOR_TEST_RUN_STARTED_MS']);
    const verdict = summarize({
      peers: runCoordinator()?.report(),
      tests,
      failedFiles,
      unhandledErrors: unhandledErrors.length,
      required: peersRequired(),
      vitestMs: Date.now() - this.started,
      totalMs: Number.isFinite(startedByScript) && startedByScript > 0 ? Date.now() - startedByScript : undefined,
    });
    process.stdout.write(verdict.text);
    if (verdict.fail) process.exitCode = 1;
  }
}

function ancestorFailed(test: TestCase): boolean {
  for (let parent: TestSuite | TestModule = test.parent; ; parent = parent.parent) {
    if (parent.errors().length > 0) return true;
    if (parent.type === 'module') return false;
  }
}

function hasOnly(module: TestModule): boolean {
  for (const test of module.children.allTests()) if (test.options.mode === 'only') return true;
  return false;
}
