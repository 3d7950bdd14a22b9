import { describe, expect, it } from 'vitest';
import type { PeerReport } from '../peers/coordinator.js';
import { summarize, type RunFacts, type TestFact } from './run-summary.js';

/** The summary at the end of every run, and the CI verdict it carries. */

const test = (id: string, state: TestFact['state'], extra: Partial<TestFact> = {}): TestFact => ({
  id,
  state,
  note: undefined,
  allowed: undefined,
  filtered: false,
  ...extra,
});

const peers: PeerReport[] = [
  {
    name: 'openstack',
    title: 'Keystone + Glance',
    usedBy: '',
    pending: false,
    files: ['test/e2e/sync-glance.test.ts', 'test/fault/dead-target.test.ts'],
    outcome: {
      state: 'ready',
      coordinates: {},
      version: 'keystone 2:22.0.2, glance-api 2:25.1.0',
      reused: true,
      ms: 20,
    },
  },
  {
    name: 's3',
    title: 'Swift s3api',
    usedBy: '',
    pending: false,
    files: ['test/store/s3-store.test.ts'],
    outcome: { state: 'ready', coordinates: {}, version: 'python3-swift 2.30.1', reused: false, ms: 6120 },
  },
  { name: 'genisoimage', title: 'genisoimage', usedBy: '', pending: false, files: [], outcome: undefined },
];

const facts = (extra: Partial<RunFacts> = {}): RunFacts => ({
  peers,
  tests: [test('a > one', 'passed'), test('a > two', 'passed'), test('b > three', 'failed')],
  failedFiles: [],
  unhandledErrors: 0,
  required: true,
  vitestMs: 512_000,
  totalMs: 581_000,
  ...extra,
});

describe('the run summary', () => {
  it('says per peer whether it ran, how, its version and who needed it; the counts; the duration', () => {
    const { text, fail } = summarize(facts());
    expect(text).toContain(
      [
        'Peers (test/peers/registry.ts):',
        '  ok   openstack    Keystone + Glance: ready, reused; keystone 2:22.0.2, glance-api 2:25.1.0 [2 test files]',
        '  ok   s3           Swift s3api: ready, started in 6.1 s; python3-swift 2.30.1 [1 test file]',
        '  -    genisoimage  genisoimage: not needed by this run',
        'Tests: 2 passed, 1 failed, 0 skipped',
        '  failed: b > three',
        'Duration: 9 min 41 s in all (vitest 8 min 32 s; the rest: npm, Debian packages, build)',
        'Required peers (VISOR_TEST_REQUIRE_PEERS=1): every peer ran, and every skip is on the allowed list.',
      ].join('\n'),
    );
    // A failed test fails the run through vitest; the summary adds no verdict of its own for it.
    expect(fail).toBe(false);
  });

  it('groups skips by reason, marking the allowed ones, and fails a required run on any other', () => {
    const tests = [
      test('m > x', 'skipped', { note: 'no MongoDB', allowed: 'mongodb' }),
      test('m > y', 'skipped', { note: 'no MongoDB', allowed: 'mongodb' }),
      test('g > z', 'skipped', { note: 'Keystone + Glance cannot run here: needs root' }),
    ];
    const required = summarize(facts({ tests }));
    expect(required.text).toContain(
      'Tests: 0 passed, 0 failed, 3 skipped\nSkipped, by reason:\n' +
        '  2 allowed in CI (mongodb): no MongoDB\n      - m > x\n      - m > y\n',
    );
    expect(required.text).toContain(
      '  1 NOT ALLOWED in CI: Keystone + Glance cannot run here: needs root\n      - g > z\n',
    );
    expect(required.text).toContain(
      'the run FAILS:\n' +
        '  - 1 skipped test(s) not on the allowed list (test/setup/allowed-skips.ts: mongodb, capability, timing)',
    );
    expect(required.fail).toBe(true);
    const laptop = summarize(facts({ tests, required: false }));
    expect(laptop.text).toContain('  1 skipped: Keystone + Glance cannot run here: needs root\n');
    expect(laptop.text).toContain(
      'Required peers: off (a peer that cannot run here skips its tests; CI sets VISOR_TEST_REQUIRE_PEERS=1)',
    );
    expect(laptop.text).not.toContain('FAILS');
    expect(laptop.fail).toBe(false);
  });

  it('passes a required run whose only skips are allowed, and shows at most five tests per reason', () => {
    const tests = Array.from({ length: 7 }, (_, i) =>
      test(`c > ${i}`, 'skipped', { note: 'read-only store', allowed: 'capability' }),
    );
    const { text, fail } = summarize(facts({ tests }));
    expect(text).toContain('  7 allowed in CI (capability): read-only store\n      - c > 0\n');
    expect(text).toContain('      - c > 4\n      - ... and 2 more\n');
    expect(fail).toBe(false);
  });

  it('fails a required run when a peer did not run, even if no test said so', () => {
    const broken: PeerReport = {
      ...peers[1]!,
      outcome: { state: 'failed', reason: 'start-s3.sh failed', log: '', ms: 4 },
    };
    const { text, fail } = summarize(facts({ peers: [broken] }));
    expect(text).toContain('  FAIL s3  Swift s3api: did not start: start-s3.sh failed [1 test file]');
    expect(text).toContain('the run FAILS:\n  - peer s3 (Swift s3api) did not start: start-s3.sh failed');
    expect(fail).toBe(true);
  });

  it('counts neither name-filtered tests nor tests whose suite failed as skips', () => {
    const tests = [
      test('a > kept', 'passed'),
      test('a > filtered', 'skipped', { filtered: true }),
      test('b > after a failed beforeAll', 'notRun'),
    ];
    const failedFiles = [
      {
        file: 'b.test.ts',
        error: 'peer "s3" (Swift s3api) did not start: start-s3.sh failed\n--- start log of s3 ---',
      },
    ];
    const { text, fail } = summarize(facts({ tests, failedFiles }));
    expect(text).toContain(
      'Tests: 1 passed, 0 failed, 0 skipped, 1 not run (their suite failed) (1 left out by the name filter); ' +
        '1 test file(s) with a failure outside tests\n' +
        '  failed file: b.test.ts: peer "s3" (Swift s3api) did not start: start-s3.sh failed\n',
    );
    expect(text).not.toContain('Skipped, by reason');
    expect(fail).toBe(false);
  });

  it('says so when the run had no peer coordinator, and gives the vitest time alone without test/run.sh', () => {
    const { text } = summarize(facts({ peers: undefined, totalMs: undefined, vitestMs: 42_400 }));
    expect(text).toContain('  (no peer coordinator in this run: see test/setup/global-setup.ts)');
    expect(text).toContain('Duration: 42 s (vitest)');
  });
});
