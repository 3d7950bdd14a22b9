import { describe, expect, it } from 'vitest';
import { isVisorError } from '../errors.js';
import { deprecate, dueChange, lifeOf, purgeDue, undeprecate } from './deprecation.js';
import { applyChanges, newImage } from './image.js';
import type { Image } from './model.js';

const t0 = new Date('2026-06-01T00:00:00.000Z');
const at = (iso: string) => new Date(iso);
const clock = { now: () => t0 };
const base = (extra: Partial<Image> = {}): Image => ({
  ...newImage({ name: 'deb', architecture: 'x86_64' }, clock),
  ...extra,
});
const replacement = '00000000-0000-4000-8000-000000000002';

function kindOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isVisorError(error) ? error.kind : 'other';
  }
  return undefined;
}

describe('deprecation machine', () => {
  it('goes active -> deprecated -> obsolete -> deleted as its dates pass', () => {
    const image = base();
    expect(lifeOf(image, t0).state).toBe('active');
    const changes = deprecate(image, { replacement, obsoleteOn: '2026-07-01', deleteOn: '2026-08-01T12:00:00Z' }, t0);
    const deprecated = applyChanges(image, changes, clock);
    expect(deprecated.deprecation).toEqual({
      state: 'deprecated',
      since: t0.toISOString(),
      replacement,
      obsoleteOn: '2026-07-01T00:00:00.000Z',
      deleteOn: '2026-08-01T12:00:00.000Z',
    });
    expect(lifeOf(deprecated, t0)).toMatchObject({ state: 'deprecated', reason: expect.stringContaining(replacement) });
    expect(lifeOf(deprecated, at('2026-07-01T00:00:00Z')).state).toBe('obsolete');
    expect(lifeOf(deprecated, at('2026-08-01T12:00:00Z')).state).toBe('deleted');
    // The sweeper writes what the dates say, once each.
    expect(dueChange(deprecated, t0, 1000)).toBeUndefined();
    const obsoleteChange = dueChange(deprecated, at('2026-07-02T00:00:00Z'), 1000);
    expect(obsoleteChange).toEqual({ deprecation: { ...deprecated.deprecation, state: 'obsolete' } });
    const deleteChange = dueChange(deprecated, at('2026-08-02T00:00:00Z'), 86_400_000);
    expect(deleteChange).toEqual({
      status: 'deleted',
      deletedAt: '2026-08-02T00:00:00.000Z',
      purgeAfter: '2026-08-03T00:00:00.000Z',
    });
  });

  it('never schedules the deletion of a protected image, and says why', () => {
    const image = base({
      protected: true,
      deprecation: { state: 'deprecated', since: t0.toISOString(), deleteOn: '2026-06-02T00:00:00Z' },
    });
    const later = at('2026-06-03T00:00:00Z');
    expect(lifeOf(image, later)).toMatchObject({ state: 'deprecated', held: expect.stringContaining('protected') });
    expect(dueChange(image, later, 0)).toBeUndefined();
  });

  it('goes straight to obsolete when asked, and back to active on undeprecate', () => {
    const image = base();
    const obsolete = applyChanges(image, deprecate(image, { state: 'obsolete' }, t0), clock);
    expect(lifeOf(obsolete, t0).state).toBe('obsolete');
    // Deprecating an obsolete image again changes the schedule, not the state, and keeps `since`.
    const again = deprecate(obsolete, { replacement }, at('2026-06-05T00:00:00Z'));
    expect(again.deprecation).toMatchObject({ state: 'obsolete', since: t0.toISOString(), replacement });
    const active = applyChanges(obsolete, undeprecate(obsolete), clock);
    expect(active.deprecation).toBeUndefined();
    expect(lifeOf(active, t0).state).toBe('active');
  });

  it('refuses what cannot be', () => {
    const image = base();
    expect(kindOf(() => deprecate(image, { replacement: image.id }, t0))).toBe('invalidInput');
    expect(kindOf(() => deprecate(image, { obsoleteOn: 'next tuesday' }, t0))).toBe('invalidInput');
    expect(kindOf(() => deprecate(image, { obsoleteOn: '2026-08-01', deleteOn: '2026-07-01' }, t0))).toBe(
      'invalidInput',
    );
    expect(kindOf(() => undeprecate(image))).toBe('conflict');
    const deleted = applyChanges(image, { status: 'deleted', deletedAt: t0.toISOString() }, clock);
    expect(kindOf(() => deprecate(deleted, {}, t0))).toBe('conflict');
    expect(kindOf(() => undeprecate(deleted))).toBe('conflict');
    expect(lifeOf(deleted, t0).state).toBe('deleted');
  });

  it('purges a deleted image only once its keeping period is over', () => {
    const deleted = base({ status: 'deleted', deletedAt: t0.toISOString(), purgeAfter: '2026-06-08T00:00:00.000Z' });
    expect(purgeDue(deleted, at('2026-06-07T23:59:59Z'))).toBe(false);
    expect(purgeDue(deleted, at('2026-06-08T00:00:00Z'))).toBe(true);
    expect(purgeDue(base(), at('2030-01-01T00:00:00Z'))).toBe(false);
  });
});
