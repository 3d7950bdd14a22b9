/**
 * The driver kit: what every IaaS adapter needs and no adapter should write again. A deadline
 * that tells a timeout from a cancellation, the poll-until-ready loop, the format and
 * retire-mode refusals, the cleanup of a failed create that reports what it left, PEM options,
 * and option schema pieces. The memory driver (core/iaas/memory) shows them in use.
 */
export { checkFormats, checkRetireMode } from './checks.js';
export { cleanUpAfter, cleanupMs, removeQuietly, type CleanupOptions } from './cleanup.js';
export { Deadline, inSeconds, type DeadlineEnd, type FailureWords } from './deadline.js';
export { ignoredSeconds, seconds, warnIgnoredTimeout } from './options.js';
export { loadPem, type PemOption } from './pem.js';
export { pause, pollUntil, type PollOptions } from './poll.js';
