import { describe, expect, it } from 'vitest';
import { isVisorError } from '../../../core/errors.js';
import { deprecateRequest } from './lifecycle.js';

function problems(body: unknown): string[] {
  try {
    deprecateRequest(body);
  } catch (error) {
    if (isVisorError(error, 'invalidInput'))
      return (error.details as { problems?: string[] } | undefined)?.problems ?? [error.message];
    throw error;
  }
  return [];
}

describe('deprecate request bodies', () => {
  it('reads the wire names into the request', () => {
    const replacement = '00000000-0000-4000-8000-000000000001';
    expect(
      deprecateRequest({
        replacement,
        obsolete_on: '2027-01-01',
        delete_on: '2027-02-01T00:00:00Z',
        state: 'obsolete',
      }),
    ).toEqual({ replacement, obsoleteOn: '2027-01-01', deleteOn: '2027-02-01T00:00:00Z', state: 'obsolete' });
    expect(deprecateRequest(undefined)).toEqual({});
    expect(deprecateRequest({})).toEqual({});
  });

  it('names every bad key at once, and takes nothing from a body it refuses', () => {
    const found = problems({
      replacement: 'x',
      obsolete_on: 'soon',
      delete_on: 7,
      state: 'gone',
      extra: 1,
      __proto__: { a: 1 },
    });
    expect(found).toHaveLength(5);
    expect(found.join('\n')).toMatch(/replacement must be an image id/);
    expect(found.join('\n')).toMatch(/obsolete_on must be a date/);
    expect(found.join('\n')).toMatch(/delete_on must be non-empty text/);
    expect(found.join('\n')).toMatch(/state must be deprecated or obsolete/);
    expect(found.join('\n')).toMatch(/"extra" is not one of/);
    expect(problems([])).toEqual(['the JSON body must be an object']);
    expect(problems('text')).toEqual(['the JSON body must be an object']);
  });
});
