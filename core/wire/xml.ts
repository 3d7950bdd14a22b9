import { createRequire } from 'node:module';

/**
 * fast-xml-parser through its `require` entry, one bundled file (its ESM entry is ~20 modules,
 * loaded at every CLI start because the OVF inspector needs it): see ./axios.ts for why module
 * counts matter. Every product module takes it from here.
 */
const xml = createRequire(import.meta.url)('fast-xml-parser') as typeof import('fast-xml-parser');

export const { XMLParser, XMLValidator } = xml;
export type { EntityDecoderOptions } from 'fast-xml-parser';
