import { VisorError } from '../errors.js';
import type { ByteRange } from './port.js';

/** Object keys stores accept: image ids and similar names, never paths. */
export const objectKeyPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/** Resolves an inclusive range against the object's size; unsatisfiable ranges are invalidInput. */
export function checkRange(range: ByteRange, size: number): { start: number; end: number } {
  const end = Math.min(range.end ?? size - 1, size - 1);
  if (!Number.isSafeInteger(range.start) || range.start < 0 || range.start >= size || end < range.start) {
    throw new VisorError(
      'invalidInput',
      `range ${range.start}-${range.end ?? ''} is not satisfiable for ${size} bytes`,
      {
        details: { size, unsatisfiable: true },
      },
    );
  }
  return { start: range.start, end };
}
