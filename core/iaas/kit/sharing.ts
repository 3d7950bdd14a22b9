import { VisorError } from '../../errors.js';
import type { DriverCapabilities, ShareRequest } from '../port.js';

/** What one `share` call changes: the wanted principals that are missing, and visor's own that are unwanted. */
export interface ShareDelta {
  add: string[];
  remove: string[];
}

/**
 * The desired-state rule every driver's `share` follows, in one place: add each wanted principal
 * the image lacks; remove a present principal only when visor added it (`managed`) and it is no
 * longer wanted. A member someone else added is never removed, wanted or not.
 */
export function shareDelta(present: readonly string[], request: Pick<ShareRequest, 'wanted' | 'managed'>): ShareDelta {
  const have = new Set(present);
  const wanted = new Set(request.wanted);
  const add = [...wanted].filter((p) => !have.has(p)).sort();
  const remove = [...new Set(request.managed)].filter((p) => have.has(p) && !wanted.has(p)).sort();
  return { add, remove };
}

/** Refuses to share where the cloud cannot, or with more principals than it can hold; never falls back to public. */
export function checkSharing(
  cloud: string,
  capabilities: Pick<DriverCapabilities, 'sharing'>,
  wanted: readonly string[],
): void {
  const sharing = capabilities.sharing;
  if (!sharing) {
    throw new VisorError(
      'unsupported',
      `${cloud}: this cloud cannot share an image with chosen principals; the image stays as it is (never made public)`,
    );
  }
  const distinct = new Set(wanted).size;
  if (sharing.maxPrincipals !== undefined && distinct > sharing.maxPrincipals) {
    throw new VisorError(
      'unsupported',
      `${cloud}: an image can be shared with at most ${sharing.maxPrincipals} ${sharing.principal}(s) here, ` +
        `not ${distinct} (${[...new Set(wanted)].join(', ')})`,
    );
  }
}
