import { z } from 'zod';
import type { Logger } from '../../logging/logger.js';

/**
 * Pieces of adapter options schemas that every adapter writes alike. Durations in adapter
 * options are seconds (numbers, fractions allowed: tests poll every 0.05 s).
 */

/** A duration in seconds, more than 0 and at most `max`. */
export const seconds = (max: number) => z.number().positive('must be more than 0 seconds').max(max);

/**
 * An option that once set a driver's own deadline for `create`: still accepted, so that older
 * configs load, but ignored (with a warning, `warnIgnoredTimeout`): a create's deadline is its
 * caller's, `sync.timeouts.action` for the agent.
 */
export const ignoredSeconds = () =>
  z.number().positive().optional().describe("ignored (deprecated): a create's deadline is sync.timeouts.action");

/** Logs, once per driver, that a deprecated timeout option is set and has no effect. */
export function warnIgnoredTimeout(logger: Logger, cloud: string, key: string, value: number | undefined): void {
  if (value === undefined) return;
  logger.warn(`clouds.${cloud}.options.timeouts.${key} is ignored: the deadline of a create is sync.timeouts.action`, {
    option: `timeouts.${key}`,
  });
}
