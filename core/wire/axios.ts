import { createRequire } from 'node:module';
import type { AxiosStatic } from 'axios';

/**
 * axios through its `require` entry: one bundled file, where its ESM entry is 66 modules — ~0.1 s
 * of module loading at every start of the CLI (`visor sync`, `visor add`), measured against the
 * ~0.5 s a sync spends before its run (BENCHMARKS.md, Push). Every product module takes axios
 * from here, so that all of them share one copy. Types still come from the package's declarations.
 */
const axios = createRequire(import.meta.url)('axios') as AxiosStatic;

export default axios;
export const isAxiosError: AxiosStatic['isAxiosError'] = axios.isAxiosError;
