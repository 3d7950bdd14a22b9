import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { validateXML } from 'xmllint-wasm';
import { repoRoot } from '../../support/cli.js';

/**
 * Validation of EC2 Query responses with libxml2's xmllint (wasm):
 * - success bodies against the XSD embedded in the EC2 WSDL 2010-08-31
 *   (test/fixtures/eucalyptus-ec2/aws-ec2-wsdl). The double answers in the namespace of the
 *   Version asked for, as Eucalyptus does; the body is checked in the 2010-08-31 namespace, so
 *   it must hold only what that version's types allow, in their order.
 * - error bodies (<Response><Errors>…) against ec2-error-response.xsd (see its .source.txt).
 */

const fixtures = join(repoRoot, 'test/fixtures/eucalyptus-ec2');
export const wsdlNamespace = 'http://ec2.amazonaws.com/doc/2010-08-31/';

/** The <xs:schema> of the WSDL's <types>, standalone (the xs prefix is declared on the WSDL root). */
export async function wsdlSchema(): Promise<string> {
  const wsdl = await readFile(join(fixtures, 'aws-ec2-wsdl/ec2-2010-08-31.wsdl'), 'utf8');
  const start = wsdl.indexOf('<xs:schema');
  const end = wsdl.indexOf('</xs:schema>') + '</xs:schema>'.length;
  if (start < 0 || end < start) throw new Error('the WSDL has no embedded schema');
  const schema = wsdl
    .slice(start, end)
    .replace('<xs:schema ', '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" ');
  return `<?xml version="1.0" encoding="UTF-8"?>\n${schema}\n`;
}

/** The body with its EC2 namespace (any version) replaced by the 2010-08-31 one. */
export function inWsdlNamespace(body: string): string {
  return body.replace(/xmlns="http:\/\/ec2\.amazonaws\.com\/doc\/[0-9-]+\/?"/, `xmlns="${wsdlNamespace}"`);
}

export const isErrorBody = (body: string) => /^(<\?xml[^>]*\?>\s*)?<Response>/.test(body.trimStart());

export interface XsdReport {
  checked: number;
  errors: string[];
}

/** Validates every body (deduplicated), successes and errors each against their schema. */
export async function validateEc2Bodies(bodies: readonly string[]): Promise<XsdReport> {
  const unique = [...new Set(bodies)];
  const errorBodies = unique.filter(isErrorBody);
  const okBodies = unique.filter((b) => !isErrorBody(b));
  const errors: string[] = [];
  const run = async (docs: string[], schemaName: string, schema: string) => {
    for (let start = 0; start < docs.length; start += 200) {
      const batch = docs.slice(start, start + 200);
      const result = await validateXML({
        xml: batch.map((doc, i) => ({ fileName: `response-${start + i}.xml`, contents: doc })),
        schema: [{ fileName: schemaName, contents: schema }],
        maxMemoryPages: 2048,
      });
      for (const e of result.errors) {
        const index = Number(/response-(\d+)\.xml/.exec(e.loc?.fileName ?? e.rawMessage)?.[1] ?? -1);
        errors.push(`${e.message} in ${(docs[index] ?? '?').slice(0, 200)}`);
      }
    }
  };
  await run(okBodies.map(inWsdlNamespace), 'ec2-2010-08-31.xsd', await wsdlSchema());
  await run(errorBodies, 'ec2-error-response.xsd', await readFile(join(fixtures, 'ec2-error-response.xsd'), 'utf8'));
  return { checked: unique.length, errors };
}
