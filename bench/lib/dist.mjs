// The build under test: dist/ of this checkout, or another build (BENCH_DIST) for before/after figures.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const dist = process.env.BENCH_DIST
  ? resolve(process.env.BENCH_DIST)
  : fileURLToPath(new URL('../../dist', import.meta.url));
