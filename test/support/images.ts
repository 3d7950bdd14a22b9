// The image helpers the exported contract suites use too (core/testing, public as visor/testing).
export { makeImage, steppingClock } from '../../core/testing/images.js';

export const hex = (c: string, n: number) => c.repeat(n);
