import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validateXML } from 'xmllint-wasm';
import { repoRoot } from '../../support/cli.js';

/**
 * Validation of OpenNebula documents against the official XSDs (OpenNebula/one's XSD folder,
 * copied to test/fixtures/opennebula/xsd) with libxml2's xmllint (wasm).
 * oned sends its documents without the schemas' namespace (the README of that folder: the XSD
 * samples add "the headers (namespace, schema location)"), so the namespace is added to the
 * root element before validating, exactly as those samples carry it.
 */

export const oneNamespace = 'http://opennebula.org/XMLSchema';
const xsdDir = join(repoRoot, 'test/fixtures/opennebula/xsd');
const xsdFiles = ['shared.xsd', 'image.xsd', 'image_pool.xsd', 'datastore.xsd', 'datastore_pool.xsd'];

/**
 * One schema holding every global element the documents can start with (IMAGE, IMAGE_POOL, DATASTORE, DATASTORE_POOL).
 */
const umbrella =
  `<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="${oneNamespace}" ` +
  `targetNamespace="${oneNamespace}" elementFormDefault="qualified">
  <xs:include schemaLocation="image_pool.xsd"/>
  <xs:include schemaLocation="datastore_pool.xsd"/>
</xs:schema>
`;

export function withNamespace(document: string): string {
  return document.replace(/^(\s*(?:<\?xml[^>]*\?>\s*)?<[A-Z_]+)(\s*\/?>)/, `$1 xmlns="${oneNamespace}"$2`);
}

export interface XsdReport {
  valid: boolean;
  checked: number;
  errors: string[];
}

/** Validates every document (deduplicated), in batches, and reports every error with the document it came from. */
export async function validateOneDocuments(documents: readonly string[]): Promise<XsdReport> {
  const unique = [...new Set(documents)];
  const preload = await Promise.all(
    xsdFiles.map(async (fileName) => ({ fileName, contents: await readFile(join(xsdDir, fileName), 'utf8') })),
  );
  const errors: string[] = [];
  for (let start = 0; start < unique.length; start += 200) {
    const batch = unique.slice(start, start + 200);
    const result = await validateXML({
      xml: batch.map((doc, i) => ({ fileName: `document-${start + i}.xml`, contents: withNamespace(doc) })),
      schema: [{ fileName: 'one-documents.xsd', contents: umbrella }],
      preload,
      maxMemoryPages: 1024,
    });
    for (const e of result.errors) {
      const index = Number(/document-(\d+)\.xml/.exec(e.loc?.fileName ?? e.rawMessage)?.[1] ?? -1);
      errors.push(`${e.message} in ${(unique[index] ?? '?').slice(0, 160)}`);
    }
  }
  return { valid: errors.length === 0, checked: unique.length, errors };
}
