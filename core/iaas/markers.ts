import { VisorError } from '../errors.js';
import type { Claim, Markers } from './port.js';

// Defined beside the port that uses it (no import cycle); re-exported where it always was.
export type { Claim } from './port.js';

/** How one cloud spells the marker keys (Glance properties, ONE attributes, EC2 tags, S3 metadata). */
export interface MarkerKeys {
  agent: string;
  target: string;
  imageId: string;
  sha256: string;
  revision: string;
}

export const defaultMarkerKeys: MarkerKeys = {
  agent: 'visor_agent',
  target: 'visor_target',
  imageId: 'visor_image_id',
  sha256: 'visor_sha256',
  revision: 'visor_revision',
};

/** What a target name looks like (a `clouds:` key of the config). */
const targetPattern = /^[a-z][a-z0-9_-]{0,62}$/;

export function markersToAttributes(markers: Markers, keys: MarkerKeys = defaultMarkerKeys): Record<string, string> {
  return {
    [keys.agent]: markers.agent,
    ...(markers.target !== undefined ? { [keys.target]: markers.target } : {}),
    [keys.imageId]: markers.imageId,
    [keys.sha256]: markers.sha256,
    [keys.revision]: String(markers.revision),
  };
}

/**
 * Reads markers back; anything incomplete or malformed counts as "not ours", so that an image
 * someone edited by hand is left alone rather than half-trusted. A missing target is the older
 * scheme (images made before markers named their target) and is read as such; a target that is
 * present but malformed is not.
 */
export function markersFromAttributes(
  attributes: Readonly<Record<string, unknown>>,
  keys: MarkerKeys = defaultMarkerKeys,
): Markers | undefined {
  const agent = attributes[keys.agent];
  // Empty reads as absent: clouds whose merge updates cannot delete an attribute blank it instead.
  const rawTarget = attributes[keys.target];
  const target = rawTarget === '' ? undefined : rawTarget;
  const imageId = attributes[keys.imageId];
  const sha256 = attributes[keys.sha256];
  const revision = attributes[keys.revision];
  if (typeof agent !== 'string' || agent === '') return undefined;
  if (target !== undefined && (typeof target !== 'string' || !targetPattern.test(target))) return undefined;
  if (typeof imageId !== 'string' || !/^[0-9a-f-]{36}$/.test(imageId)) return undefined;
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) return undefined;
  const rev =
    typeof revision === 'number'
      ? revision
      : typeof revision === 'string' && /^\d{1,15}$/.test(revision)
        ? Number(revision)
        : NaN;
  if (!Number.isSafeInteger(rev) || rev < 1) return undefined;
  return { agent, ...(target !== undefined ? { target } : {}), imageId, sha256, revision: rev };
}

/** True when `key` is one of the marker keys (so adapters can strip them from free-form properties). */
export function isMarkerKey(key: string, keys: MarkerKeys = defaultMarkerKeys): boolean {
  return [keys.agent, keys.target, keys.imageId, keys.sha256, keys.revision].includes(key);
}

/** Why `markers` do not fit `claim`, or undefined when they do. */
export function claimProblem(markers: Markers | undefined, claim: Claim): string | undefined {
  if (claim.owner === 'none') {
    if (!markers) return undefined;
    return `it is marked by agent ${markers.agent}${markers.target ? ` for target ${markers.target}` : ''}`;
  }
  if (!markers) return 'it carries no (or no complete) visor markers';
  if (markers.agent !== claim.agent) return `it is marked by agent ${markers.agent}, not ${claim.agent}`;
  if (claim.owner === 'legacy') {
    if (markers.target !== undefined) return `it is marked for target ${markers.target} now`;
  } else if (markers.target !== claim.target) {
    if (markers.target === undefined) return `its markers name no target (older scheme), not ${claim.target}`;
    return `it is marked for target ${markers.target}, not ${claim.target}`;
  }
  if (markers.imageId !== claim.imageId) {
    return `it is a copy of catalog image ${markers.imageId}, not ${claim.imageId}`;
  }
  return undefined;
}

/** Throws `conflict` (nothing changed) when the image's markers do not fit the claim. */
export function checkClaim(
  nativeId: string,
  markers: Markers | undefined,
  claim: Claim | undefined,
  doing: string,
): void {
  if (!claim) return;
  const problem = claimProblem(markers, claim);
  if (problem) {
    throw new VisorError('conflict', `refusing to ${doing} image ${nativeId}: ${problem}`, {
      details: { nativeId, claim: claim.owner },
    });
  }
}
