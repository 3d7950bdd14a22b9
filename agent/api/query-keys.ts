import { VisorError } from '../../core/errors.js';

/**
 * Query keys a Glance user types. Those visor can answer are renamed to visor's key; the
 * others are refused naming what visor offers instead, rather than read as a custom property
 * filter that matches nothing.
 */
export const glanceAliases: Readonly<Record<string, string>> = {
  sort_key: 'sort',
  sort_dir: 'dir',
  visibility: 'access',
};

const glanceRefusals: Readonly<Record<string, string>> = {
  size_min: 'visor filters on an exact size=N; it has no size range',
  size_max: 'visor filters on an exact size=N; it has no size range',
  'changes-since': 'sort=updated_at&dir=desc lists the latest changes first',
  member_status: 'member=NAME lists the images shared with NAME',
  os_hidden: 'visor has no hidden images; status=deleted lists the retired ones',
  protected: 'visor has no protected flag; use a custom property (property.protected=true)',
  is_public: 'access=public',
};

/** `visibility=community` has no visor level: it names what does exist. */
export function glanceValue(key: string, value: string): string {
  if (key === 'visibility' && !['public', 'private', 'shared'].includes(value)) {
    throw new VisorError(
      'invalidInput',
      `visibility=${value.slice(0, 20)}: visor's access levels are public, private and shared`,
    );
  }
  return value;
}

export function refuseGlanceKey(key: string): void {
  const instead = Object.hasOwn(glanceRefusals, key) ? glanceRefusals[key] : undefined;
  if (instead !== undefined) throw new VisorError('invalidInput', `"${key}" is a Glance query key: ${instead}`);
}

/**
 * A key within two edits of a known one is a typo, not a custom property: 400 with "did you
 * mean". Short keys get fewer edits (one from three letters, none below): two edits turn any
 * two-letter key into any other.
 */
export function refuseTypo(key: string, known: readonly string[]): void {
  const lower = key.toLowerCase();
  const allowed = lower.length >= 5 ? 2 : lower.length >= 3 ? 1 : 0;
  if (allowed === 0) return;
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    if (name === lower) continue;
    const distance = editDistance(lower, name, allowed);
    if (distance <= allowed && (!best || distance < best.distance)) best = { name, distance };
  }
  if (!best) return;
  throw new VisorError(
    'invalidInput',
    `unknown query key "${key.slice(0, 100)}": did you mean "${best.name}"? ` +
      `(a custom property of that name is filtered as property.${key.slice(0, 100)}=...)`,
  );
}

/** Levenshtein distance, giving up (returning limit + 1) once it exceeds `limit`. */
export function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const value = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      current.push(value);
      rowMin = Math.min(rowMin, value);
    }
    if (rowMin > limit) return limit + 1;
    previous = current;
  }
  return previous[b.length]!;
}
