import type { Reporter, TestModule } from 'vitest/node';

/**
 * Lists every skipped test with its reason at the end of the run, so that a suite that could
 * not run here (no MongoDB server, no S3 server, ...) is visibly reported, never silently passed.
 */
export default class SkipReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const byReason = new Map<string, string[]>();
    let filtered = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const result = test.result();
        if (result.state !== 'skipped') continue;
        // Tests left out by a -t/name filter are not skips of the suite; everything else must say why.
        if (!result.note && test.options.mode === 'skip' && process.argv.some((a) => a === '-t' || a.startsWith('--testNamePattern'))) {
          filtered++;
          continue;
        }
        const reason = result.note ?? 'no reason given';
        const list = byReason.get(reason) ?? [];
        list.push(`${module.moduleId.replace(`${process.cwd()}/`, '')} > ${test.fullName}`);
        byReason.set(reason, list);
      }
    }
    if (byReason.size === 0) return;
    const lines = ['', 'SKIPPED TESTS (not run here, with the reason):'];
    if (filtered > 0) lines.push(`  (${filtered} more left out by the name filter)`);
    for (const [reason, tests] of byReason) {
      lines.push(`  ${tests.length} skipped: ${reason}`);
      for (const t of tests.slice(0, 5)) lines.push(`      - ${t}`);
      if (tests.length > 5) lines.push(`      - ... and ${tests.length - 5} more`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  }
}
