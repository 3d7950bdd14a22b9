import type { TestContext } from 'vitest';

/**
 * The only skips visor's CI run may have (VISOR_TEST_REQUIRE_PEERS=1), each with why it is fine.
 * Anything else skipped fails the run (test/setup/run-reporter.ts): a suite that did not run
 * must never pass silently. A test claims one of these with `skipAllowed(ctx, kind, reason)`;
 * the exported contract suites do, so a plugin's own CI can read the kind in the test's meta.
 * Skips for a missing peer are not here on purpose: requirePeer fails them in CI.
 */
export const allowedSkips = {
  mongodb:
    'no MongoDB server can be installed on these machines: ' +
    'the MongoDB catalog contract runs only when VISOR_TEST_MONGODB_URI names one',
  capability:
    'a contract suite (IaaS conformance, store contract) reaches a feature ' +
    'the cloud or store declares it does not have',
  timing: 'a case that can only be caught on a slow enough machine; a faster path of the same code is tested beside it',
} as const;

export type AllowedSkip = keyof typeof allowedSkips;

declare module 'vitest' {
  interface TaskMeta {
    /** Set by skipAllowed: the entry of allowedSkips this skip falls under. */
    allowedSkip?: AllowedSkip;
  }
}

/** Skips the running test with `reason`, as a skip CI accepts (one of allowedSkips). */
export function skipAllowed(ctx: TestContext, kind: AllowedSkip, reason: string): never {
  ctx.task.meta.allowedSkip = kind;
  return ctx.skip(reason);
}

/** A whole suite's skip reason, as contract suites take it: plain (a missing peer), or allowed. */
export type SuiteSkip = string | { allowed: AllowedSkip; reason: string };

/** Skips the running test for a suite-wide reason (see SuiteSkip). */
export function skipSuite(ctx: TestContext, skip: SuiteSkip): never {
  if (typeof skip === 'string') return ctx.skip(skip);
  return skipAllowed(ctx, skip.allowed, skip.reason);
}
