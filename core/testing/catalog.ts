/** visor/testing/catalog: the catalog contract (property-based: needs fast-check beside vitest). */
export { catalogContract, type CatalogHarness } from './catalog-contract.js';
export { referenceQuery } from './reference-query.js';
