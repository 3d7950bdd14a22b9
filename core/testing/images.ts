import { newImage, type Clock } from '../image/image.js';
import type { Image, ImageDraft } from '../image/model.js';

/** A clock that advances one second per reading: deterministic, strictly increasing timestamps. */
export function steppingClock(start = Date.UTC(2026, 0, 1)): Clock {
  let t = start;
  return {
    now: () => {
      const d = new Date(t);
      t += 1000;
      return d;
    },
  };
}

const defaultClock = steppingClock();

/** A valid catalog image (ubuntu-24.04, x86_64) with `overrides` applied. */
export function makeImage(overrides: Partial<ImageDraft> = {}, clock: Clock = defaultClock): Image {
  return newImage({ name: 'ubuntu-24.04', architecture: 'x86_64', ...overrides } as ImageDraft, clock);
}
