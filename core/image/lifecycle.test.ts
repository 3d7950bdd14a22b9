import { describe, expect, it } from 'vitest';
import { isVisorError } from '../errors.js';
import { canTransition, lifecycleEvents, nextStatus, type LifecycleEvent } from './lifecycle.js';
import { imageStatuses, type ImageStatus } from './model.js';

/**
 * Every (status, event, has bits) of the machine, with what it must give: a status, or `refused`.
 * The table is the specification; the tests below check the machine against all of it.
 */
type Outcome = ImageStatus | 'refused';
const table: Record<ImageStatus, Record<LifecycleEvent, [without: Outcome, withBits: Outcome]>> = {
  locked: {
    begin: ['uploading', 'uploading'],
    store: ['refused', 'refused'],
    fail: ['refused', 'refused'],
    damage: ['refused', 'refused'],
    reference: ['available', 'available'],
    clear: ['refused', 'refused'],
    delete: ['deleted', 'deleted'],
    restore: ['refused', 'refused'],
  },
  uploading: {
    begin: ['refused', 'refused'],
    store: ['available', 'available'],
    // A failed re-upload falls back to the bits the image had; a failed first upload is an error.
    fail: ['error', 'available'],
    damage: ['refused', 'refused'],
    reference: ['refused', 'refused'],
    clear: ['locked', 'locked'],
    delete: ['deleted', 'deleted'],
    restore: ['refused', 'refused'],
  },
  available: {
    begin: ['uploading', 'uploading'],
    store: ['refused', 'refused'],
    fail: ['refused', 'refused'],
    // Stored bits read back that do not match the image's sha256.
    damage: ['error', 'error'],
    reference: ['available', 'available'],
    clear: ['refused', 'refused'],
    delete: ['deleted', 'deleted'],
    restore: ['refused', 'refused'],
  },
  error: {
    begin: ['uploading', 'uploading'],
    store: ['refused', 'refused'],
    fail: ['refused', 'refused'],
    damage: ['refused', 'refused'],
    reference: ['available', 'available'],
    clear: ['locked', 'locked'],
    delete: ['deleted', 'deleted'],
    restore: ['refused', 'refused'],
  },
  deleted: {
    begin: ['refused', 'refused'],
    store: ['refused', 'refused'],
    fail: ['refused', 'refused'],
    damage: ['refused', 'refused'],
    reference: ['refused', 'refused'],
    clear: ['refused', 'refused'],
    delete: ['refused', 'refused'],
    // A soft-deleted image comes back with its bits, or as metadata only.
    restore: ['locked', 'available'],
  },
};

function outcome(from: ImageStatus, event: LifecycleEvent, hasBits: boolean): Outcome {
  try {
    return nextStatus(from, event, { hasBits });
  } catch (error) {
    if (isVisorError(error, 'conflict')) return 'refused';
    throw error;
  }
}

const cases = imageStatuses.flatMap((from) =>
  lifecycleEvents.flatMap((event) =>
    [false, true].map((hasBits) => [from, event, hasBits, table[from][event][hasBits ? 1 : 0]] as const),
  ),
);

describe('image status machine', () => {
  it('has a row for every status and event', () => {
    expect(cases).toHaveLength(imageStatuses.length * lifecycleEvents.length * 2);
  });

  it.each(cases)('%s + %s (has bits: %s) -> %s', (from, event, hasBits, expected) => {
    expect(outcome(from, event, hasBits)).toBe(expected);
  });

  it('refuses with a conflict that names the status and the event', () => {
    expect(() => nextStatus('deleted', 'begin')).toThrow(/an image that is deleted cannot begin/);
  });

  it('gives only moves the catalogs accept, and reaches every move they accept', () => {
    const reached = new Set<string>();
    for (const [from, , , expected] of cases) {
      if (expected === 'refused') continue;
      expect(canTransition(from, expected), `${from} -> ${expected}`).toBe(true);
      reached.add(`${from}->${expected}`);
    }
    for (const from of imageStatuses) {
      for (const to of imageStatuses) {
        if (from !== to && canTransition(from, to))
          expect(reached.has(`${from}->${to}`), `${from} -> ${to} is reached by no event`).toBe(true);
      }
    }
    // Every illegal move is refused by the catalogs' check, too.
    for (const from of imageStatuses)
      for (const to of imageStatuses)
        if (from !== to && !reached.has(`${from}->${to}`)) expect(canTransition(from, to)).toBe(false);
  });
});
