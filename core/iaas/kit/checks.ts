import { VisorError } from '../../errors.js';
import type { ContentSource, DriverCapabilities, RetireMode } from '../port.js';

/**
 * The refusals every driver makes before it touches its cloud, worded alike: content in a
 * format the cloud does not take, and a retire mode it does not have. Both are `unsupported`:
 * the caller (the agent's planner and policy check) should not have asked.
 */

/**
 * Refuses content whose disk or container format is not among the driver's capabilities.
 * `cloud` names the adapter in the message; `advice` says what to do instead (convert to raw).
 */
export function checkFormats(
  cloud: string,
  capabilities: Pick<DriverCapabilities, 'diskFormats' | 'containerFormats'>,
  content: Pick<ContentSource, 'diskFormat' | 'containerFormat'>,
  advice?: string,
): void {
  const tail = advice ? `; ${advice}` : '';
  if (!capabilities.diskFormats.includes(content.diskFormat)) {
    const accepted = capabilities.diskFormats.join(', ');
    throw new VisorError(
      'unsupported',
      `${cloud}: disk format ${content.diskFormat} is not accepted (accepted: ${accepted})${tail}`,
      {
        details: { diskFormat: content.diskFormat },
      },
    );
  }
  if (!capabilities.containerFormats.includes(content.containerFormat)) {
    const accepted = capabilities.containerFormats.join(', ');
    throw new VisorError(
      'unsupported',
      `${cloud}: container format ${content.containerFormat} is not accepted (accepted: ${accepted})${tail}`,
      {
        details: { containerFormat: content.containerFormat },
      },
    );
  }
}

/**
 * Refuses a retire mode the driver does not offer. `why` says why the cloud (or its
 * configuration) lacks it, e.g. "is not enabled for this Glance".
 */
export function checkRetireMode(
  cloud: string,
  capabilities: Pick<DriverCapabilities, 'retireModes'>,
  mode: RetireMode,
  why: string,
): void {
  if (capabilities.retireModes.includes(mode)) return;
  const modes = capabilities.retireModes.join(', ');
  throw new VisorError('unsupported', `${cloud}: retiring by ${mode} ${why} (retireModes: ${modes})`, {
    details: { mode },
  });
}
