/**
 * XML-RPC method responses byte for byte as oned's xmlrpc-c (Abyss 1.40) writes them in the
 * recorded traffic (test/fixtures/opennebula/xmlrpc/*.response.xml): CRLF line ends, one value
 * per line, strings entity-escaped (never CDATA), <i8> for 64-bit values.
 *
 * Written here rather than with @foxglove/xmlrpc's serializer: that one wraps any string holding
 * "<" or "&" in CDATA and throws on "]]>", which every IMAGE document contains.
 */
export type XmlRpcOut = { boolean: boolean } | { i4: number } | { i8: number } | { string: string };

const escapeXml = (text: string) =>
  text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('\r', '&#x0d;');

function value(v: XmlRpcOut): string {
  if ('boolean' in v) return `<value><boolean>${v.boolean ? 1 : 0}</boolean></value>`;
  if ('i4' in v) return `<value><i4>${v.i4}</i4></value>`;
  if ('i8' in v) return `<value><i8>${v.i8}</i8></value>`;
  return `<value><string>${escapeXml(v.string)}</string></value>`;
}

export function methodResponse(values: readonly XmlRpcOut[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<methodResponse>',
    '<params>',
    '<param><value><array><data>',
    ...values.map(value),
    '</data></array></value></param>',
    '</params>',
    '</methodResponse>',
    '',
  ].join('\r\n');
}

/** An xmlrpc-c fault (unknown method, wrong parameter types): no oned reply array at all. */
export function faultResponse(code: number, message: string): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<methodResponse>',
    '<fault>',
    '<value><struct>',
    `<member><name>faultCode</name>`,
    `<value><i4>${code}</i4></value></member>`,
    `<member><name>faultString</name>`,
    `<value><string>${escapeXml(message)}</string></value></member>`,
    '</struct></value>',
    '</fault>',
    '</methodResponse>',
    '',
  ].join('\r\n');
}
