import type { PeerReport } from '../peers/coordinator.js';
import { allowedSkips, type AllowedSkip } from './allowed-skips.js';

/** What the run's summary is made of (gathered by run-reporter.ts), and the CI verdict on it. */
export interface RunFacts {
  /** Undefined when the run had no peer coordinator (a config without the project's globalSetup). */
  peers: PeerReport[] | undefined;
  tests: TestFact[];
  /** Test files that failed outside any test (an import or a beforeAll threw). */
  failedFiles: Array<{ file: string; error: string }>;
  unhandledErrors: number;
  /** VISOR_TEST_REQUIRE_PEERS=1 */
  required: boolean;
  vitestMs: number;
  /** Since .ci/run or `npm test` began (install and build included), when they say (VISOR_TEST_RUN_STARTED_MS). */
  totalMs: number | undefined;
}

export interface TestFact {
  /** "file > suite > test" */
  id: string;
  /** notRun: skipped by vitest because its suite's beforeAll or its file's import failed. */
  state: 'passed' | 'failed' | 'skipped' | 'pending' | 'notRun';
  note: string | undefined;
  allowed: AllowedSkip | undefined;
  /** Left out by a -t name filter (or .only): not a skip of the suite. */
  filtered: boolean;
}

export interface RunVerdict {
  text: string;
  /** The run must fail although vitest itself may have passed (stray skips, missing peers in CI). */
  fail: boolean;
}

export function summarize(facts: RunFacts): RunVerdict {
  const out: string[] = ['', '==================== visor test run summary ===================='];
  const problems: string[] = [];

  out.push('Peers (test/peers/registry.ts):');
  if (!facts.peers) out.push('  (no peer coordinator in this run: see test/setup/global-setup.ts)');
  const width = Math.max(0, ...(facts.peers ?? []).map((p) => p.name.length));
  for (const peer of facts.peers ?? []) {
    const head = `${peer.name.padEnd(width)}  ${peer.title}`;
    const files = peer.files.length > 0 ? ` [${peer.files.length} test file${peer.files.length === 1 ? '' : 's'}]` : '';
    const o = peer.outcome;
    if (peer.pending) {
      out.push(`  FAIL ${head}: still starting when the run ended${files}`);
      problems.push(`peer ${peer.name} was still starting when the run ended`);
    } else if (!o) {
      out.push(`  -    ${head}: not needed by this run`);
    } else if (o.state === 'ready') {
      const how = o.reused ? 'ready, reused' : `ready, started in ${seconds(o.ms)}`;
      out.push(`  ok   ${head}: ${how}; ${o.version}${files}`);
    } else {
      const what = o.state === 'unavailable' ? 'cannot run here' : 'did not start';
      out.push(`  FAIL ${head}: ${what}: ${o.reason}${files}`);
      if (facts.required) problems.push(`peer ${peer.name} (${peer.title}) ${what}: ${o.reason}`);
    }
  }

  const counted = facts.tests.filter((t) => !t.filtered);
  const count = (state: TestFact['state']) => counted.filter((t) => t.state === state).length;
  const filtered = facts.tests.length - counted.length;
  out.push(
    `Tests: ${count('passed')} passed, ${count('failed')} failed, ${count('skipped')} skipped` +
      (count('pending') > 0 ? `, ${count('pending')} pending` : '') +
      (count('notRun') > 0 ? `, ${count('notRun')} not run (their suite failed)` : '') +
      (filtered > 0 ? ` (${filtered} left out by the name filter)` : '') +
      (facts.failedFiles.length > 0 ? `; ${facts.failedFiles.length} test file(s) with a failure outside tests` : '') +
      (facts.unhandledErrors > 0 ? `; ${facts.unhandledErrors} unhandled error(s)` : ''),
  );
  for (const t of counted.filter((t) => t.state === 'failed').slice(0, 10)) out.push(`  failed: ${t.id}`);
  for (const f of facts.failedFiles.slice(0, 10)) out.push(`  failed file: ${f.file}: ${f.error.split('\n')[0]}`);

  const skipped = counted.filter((t) => t.state === 'skipped');
  if (skipped.length > 0) {
    out.push('Skipped, by reason:');
    const groups = new Map<string, TestFact[]>();
    for (const t of skipped) {
      const key = `${t.allowed ?? ''}\u0000${t.note ?? 'no reason given'}`;
      groups.set(key, [...(groups.get(key) ?? []), t]);
    }
    for (const [key, tests] of groups) {
      const [allowed, note] = key.split('\u0000') as [string, string];
      const label = allowed ? `allowed in CI (${allowed})` : facts.required ? 'NOT ALLOWED in CI' : 'skipped';
      out.push(`  ${tests.length} ${label}: ${note}`);
      for (const t of tests.slice(0, 5)) out.push(`      - ${t.id}`);
      if (tests.length > 5) out.push(`      - ... and ${tests.length - 5} more`);
    }
    const stray = skipped.filter((t) => !t.allowed);
    if (facts.required && stray.length > 0) {
      problems.push(
        `${stray.length} skipped test(s) not on the allowed list ` +
          `(test/setup/allowed-skips.ts: ${Object.keys(allowedSkips).join(', ')})`,
      );
    }
  }

  const vitest = clock(facts.vitestMs);
  const total = facts.totalMs !== undefined ? clock(facts.totalMs) : undefined;
  const rest = 'the rest: npm, Debian packages, build';
  out.push(`Duration: ${total ? `${total} in all (vitest ${vitest}; ${rest})` : `${vitest} (vitest)`}`);
  if (!facts.required) {
    out.push('Required peers: off (a peer that cannot run here skips its tests; CI sets VISOR_TEST_REQUIRE_PEERS=1)');
  } else if (problems.length === 0) {
    out.push('Required peers (VISOR_TEST_REQUIRE_PEERS=1): every peer ran, and every skip is on the allowed list.');
  } else {
    out.push(
      `Required peers (VISOR_TEST_REQUIRE_PEERS=1): the run FAILS:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  }
  out.push('================================================================');
  return { text: `${out.join('\n')}\n`, fail: problems.length > 0 };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s` : `${s} s`;
}
