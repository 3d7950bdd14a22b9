import { XMLParser, type EntityDecoderOptions } from '../../core/wire/xml.js';
import { VisorError } from '../../core/errors.js';

/**
 * Parses the XML documents oned returns inside its XML-RPC strings (IMAGE, IMAGE_POOL,
 * DATASTORE_POOL) into plain objects for schema.ts to validate.
 *
 * oned never sends a DTD, so a document that declares entities is hostile (billion laughs,
 * external entities) and is refused outright instead of being expanded under limits; only the
 * five predefined XML entities and character references are decoded.
 */

const predefined: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** The decoder fast-xml-parser calls for every text value, and for every DOCTYPE it meets. */
function strictEntityDecoder(): EntityDecoderOptions {
  return {
    setExternalEntities: () => undefined,
    addInputEntities: (entities) => {
      // Called only when the document has a DOCTYPE; any declared entity is a refusal.
      if (Object.keys(entities).length > 0) throw new Error('the document declares DTD entities');
    },
    reset: () => undefined,
    setXmlVersion: () => undefined,
    decode: (text) =>
      text.includes('&')
        ? text.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[A-Za-z][A-Za-z0-9]*);/g, (whole, ref: string) => {
            if (ref.startsWith('#x')) return codePoint(Number.parseInt(ref.slice(2), 16)) ?? whole;
            if (ref.startsWith('#')) return codePoint(Number.parseInt(ref.slice(1), 10)) ?? whole;
            return predefined[ref] ?? whole;
          })
        : text,
  };
}

function codePoint(value: number): string | undefined {
  return Number.isInteger(value) && value > 0 && value <= 0x10ffff && (value < 0xd800 || value > 0xdfff)
    ? String.fromCodePoint(value)
    : undefined;
}

/** Elements that may repeat, so that one occurrence still parses as a list. */
const listPaths = new Set([
  'IMAGE_POOL.IMAGE',
  'DATASTORE_POOL.DATASTORE',
  'IMAGE.VMS.ID',
  'IMAGE.CLONES.ID',
  'IMAGE.APP_CLONES.ID',
  'IMAGE.BACKUP_DISK_IDS.ID',
  'IMAGE.SNAPSHOTS.SNAPSHOT',
  'IMAGE.BACKUP_INCREMENTS.INCREMENT',
  'IMAGE_POOL.IMAGE.VMS.ID',
  'IMAGE_POOL.IMAGE.CLONES.ID',
  'IMAGE_POOL.IMAGE.APP_CLONES.ID',
  'IMAGE_POOL.IMAGE.BACKUP_DISK_IDS.ID',
  'IMAGE_POOL.IMAGE.SNAPSHOTS.SNAPSHOT',
  'IMAGE_POOL.IMAGE.BACKUP_INCREMENTS.INCREMENT',
  'DATASTORE_POOL.DATASTORE.CLUSTERS.ID',
  'DATASTORE_POOL.DATASTORE.IMAGES.ID',
]);

/**
 * One parsed document: `{ IMAGE: {...} }` and so on. Values stay strings (schema.ts decides
 * what is a number); empty elements are empty strings.
 */
export function parseOneDocument(xml: string, what: string): Record<string, unknown> {
  const parser = new XMLParser({
    ignoreAttributes: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    parseTagValue: false,
    trimValues: true,
    processEntities: true,
    htmlEntities: false,
    entityDecoder: strictEntityDecoder(),
    // ONE documents are a few levels deep; a deeply nested one is an attack or garbage.
    maxNestedTags: 24,
    isArray: (_name, jpath) => listPaths.has(String(jpath)),
  });
  let parsed: unknown;
  try {
    parsed = parser.parse(xml, true);
  } catch (error) {
    throw new VisorError('invalidResponse', `opennebula: ${what} is not acceptable XML: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new VisorError('invalidResponse', `opennebula: ${what} is not an XML document`);
  }
  return parsed as Record<string, unknown>;
}
