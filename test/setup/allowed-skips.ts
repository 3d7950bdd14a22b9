// The skip rules live with the exported contract suites that claim them (core/testing/skips.ts).
export { allowedSkips, skipAllowed, skipSuite, type AllowedSkip, type SuiteSkip } from '../../core/testing/skips.js';
