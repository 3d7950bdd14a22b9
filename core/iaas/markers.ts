import type { Markers } from './port.js';

/** How one cloud spells the four marker keys (Glance properties, ONE attributes, EC2 tags, S3 metadata). */
export interface MarkerKeys {
  agent: string;
  imageId: string;
  sha256: string;
  revision: string;
}

export const defaultMarkerKeys: MarkerKeys = { agent: 'visor_agent', imageId: 'visor_image_id', sha256: 'visor_sha256', revision: 'visor_revision' };

export function markersToAttributes(markers: Markers, keys: MarkerKeys = defaultMarkerKeys): Record<string, string> {
  return {
    [keys.agent]: markers.agent,
    [keys.imageId]: markers.imageId,
    [keys.sha256]: markers.sha256,
    [keys.revision]: String(markers.revision),
  };
}

/**
 * Reads markers back; anything incomplete or malformed counts as "not ours", so that an image
 * someone edited by hand is left alone rather than half-trusted.
 */
export function markersFromAttributes(attributes: Readonly<Record<string, unknown>>, keys: MarkerKeys = defaultMarkerKeys): Markers | undefined {
  const agent = attributes[keys.agent];
  const imageId = attributes[keys.imageId];
  const sha256 = attributes[keys.sha256];
  const revision = attributes[keys.revision];
  if (typeof agent !== 'string' || agent === '') return undefined;
  if (typeof imageId !== 'string' || !/^[0-9a-f-]{36}$/.test(imageId)) return undefined;
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) return undefined;
  const rev = typeof revision === 'number' ? revision : typeof revision === 'string' && /^\d{1,15}$/.test(revision) ? Number(revision) : NaN;
  if (!Number.isSafeInteger(rev) || rev < 1) return undefined;
  return { agent, imageId, sha256, revision: rev };
}

/** True when every marker key is one of `keys` (so adapters can strip them from free-form properties). */
export function isMarkerKey(key: string, keys: MarkerKeys = defaultMarkerKeys): boolean {
  return key === keys.agent || key === keys.imageId || key === keys.sha256 || key === keys.revision;
}
