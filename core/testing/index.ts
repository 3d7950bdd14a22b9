/**
 * visor/testing: the contract suites a plugin's tests run against its own product, written for
 * vitest (a peer dependency of this entry only). The catalog contract, which also needs
 * fast-check, is visor/testing/catalog.
 *
 *   import { iaasConformance } from 'visor/testing';
 *   iaasConformance('my cloud', async () => ({ driver: async () => myDriver() }));
 */
export { iaasConformance, conformanceName, type ConformanceHarness } from './iaas-conformance.js';
export { storeContract, type StoreHarness } from './store-contract.js';
export { bufferContent, randomImageBytes } from './content.js';
export { makeImage, steppingClock } from './images.js';
export { allowedSkips, skipAllowed, skipSuite, type AllowedSkip, type SuiteSkip } from './skips.js';
