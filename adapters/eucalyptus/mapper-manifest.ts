import { XMLParser } from '../../core/wire/xml.js';
import { VisorError } from '../../core/errors.js';
import { zodIssues } from '../../core/validation.js';
import { rsaEncryptHex, signManifestText, type BundleIdentity } from './driver-bundle-crypto.js';
import type { Ec2ImageType } from '../../core/wire/ec2/schema.js';
import { manifestSchema, type ParsedManifest } from './schema.js';

/**
 * The bundle manifest, EC2 AMI tools format `<version>2007-10-10</version>`, element for
 * element as euca2ools writes it (its bundle manifest writer and its bundle-image command) and as the
 * real euca-tools manifest in test/fixtures/eucalyptus-ec2/bundle-manifests has it:
 *
 *   manifest/version, bundler/{name,version,release},
 *   machine_configuration/{architecture, kernel_id?, ramdisk_id?},
 *   image/{name, user, type, digest@algorithm, size, bundled_size,
 *          ec2_encrypted_key@algorithm, user_encrypted_key@algorithm, ec2_encrypted_iv, user_encrypted_iv,
 *          parts@count/part@index/{filename, digest@algorithm}},
 *   signature = hex RSA-SHA1 over the bytes "<machine_configuration>…</image>" exactly as written.
 *
 * No whitespace between elements: the signed portion is a byte range of the document, and the
 * CLC re-reads it from the text (ImageManifests.java), so what is signed is what is sent.
 */

export interface ManifestPart {
  filename: string;
  sha1: string;
}

export interface ManifestInput {
  architecture: string;
  kernelId?: string | undefined;
  ramdiskId?: string | undefined;
  /** The bundle's file name (tar member and part-name prefix). */
  name: string;
  /** The account id of the user (12 digits on Eucalyptus 3+ and AWS). */
  user: string;
  type: Ec2ImageType;
  /** SHA1 of the tar stream, before gzip and encryption (euca2ools: tar -> sha1sum -> gzip). */
  tarSha1: string;
  /** Bytes of the image file. */
  size: number;
  /** Bytes of all parts (encrypted). */
  bundledSize: number;
  key: string;
  iv: string;
  parts: readonly ManifestPart[];
  bundlerVersion: string;
}

const escapeXml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const el = (name: string, content: string, attributes = '') => `<${name}${attributes}>${content}</${name}>`;
const sha1Attr = ' algorithm="SHA1"';
const aesAttr = ' algorithm="AES-128-CBC"';

/** The signed manifest document. */
export function buildManifest(input: ManifestInput, identity: BundleIdentity): string {
  const machine = el(
    'machine_configuration',
    el('architecture', escapeXml(input.architecture)) +
      (input.kernelId !== undefined ? el('kernel_id', escapeXml(input.kernelId)) : '') +
      (input.ramdiskId !== undefined ? el('ramdisk_id', escapeXml(input.ramdiskId)) : ''),
  );
  const parts = input.parts
    .map((part, index) =>
      el('part', el('filename', escapeXml(part.filename)) + el('digest', part.sha1, sha1Attr), ` index="${index}"`),
    )
    .join('');
  const image = el(
    'image',
    el('name', escapeXml(input.name)) +
      el('user', escapeXml(input.user)) +
      el('type', input.type) +
      el('digest', input.tarSha1, sha1Attr) +
      el('size', String(input.size)) +
      el('bundled_size', String(input.bundledSize)) +
      el('ec2_encrypted_key', rsaEncryptHex(identity.cloudCertificate, input.key), aesAttr) +
      el('user_encrypted_key', rsaEncryptHex(identity.userCertificate, input.key), aesAttr) +
      el('ec2_encrypted_iv', rsaEncryptHex(identity.cloudCertificate, input.iv)) +
      el('user_encrypted_iv', rsaEncryptHex(identity.userCertificate, input.iv)) +
      el('parts', parts, ` count="${input.parts.length}"`),
  );
  const signed = machine + image;
  const bundler = el(
    'bundler',
    el('name', 'visor') + el('version', escapeXml(input.bundlerVersion)) + el('release', '0'),
  );
  const signature = el('signature', signManifestText(identity.userPrivateKey, signed));
  const manifest = el('manifest', el('version', '2007-10-10') + bundler + signed + signature);
  return `<?xml version="1.0" encoding="UTF-8"?>${manifest}`;
}

/** The bytes the signature covers: from <machine_configuration> to </image>, as in the document. */
export function signedPortion(xml: string): string | undefined {
  const start = xml.indexOf('<machine_configuration');
  const end = xml.lastIndexOf('</image>');
  if (start < 0 || end < start) return undefined;
  return xml.slice(start, end + '</image>'.length);
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (_name, path) => path === 'manifest.image.parts.part',
  processEntities: true,
});

export interface Manifest extends ParsedManifest {
  /** The signed portion, for verification. */
  signed: string;
}

/** Parses and validates a manifest; anything malformed is `invalidResponse`. */
export function parseManifest(xml: string, where: string): Manifest {
  let document: unknown;
  try {
    document = parser.parse(xml, true);
  } catch (error) {
    throw new VisorError(
      'invalidResponse',
      `eucalyptus: the manifest ${where} is not well-formed XML (${(error as Error).message.split('\n')[0]})`,
    );
  }
  const result = manifestSchema.safeParse(document);
  if (!result.success) {
    const issues = zodIssues(result.error);
    throw new VisorError(
      'invalidResponse',
      `eucalyptus: the manifest ${where} is malformed: ${issues
        .slice(0, 5)
        .map((i) => `${i.path}: ${i.message}`)
        .join('; ')}`,
      { details: { issues } },
    );
  }
  const manifest = result.data.manifest;
  const parts = [...manifest.image.parts.part].sort((a, b) => a['@_index'] - b['@_index']);
  if (parts.length !== manifest.image.parts['@_count'] || parts.some((p, i) => p['@_index'] !== i)) {
    throw new VisorError('invalidResponse', `eucalyptus: the manifest ${where} lists parts that are not 0..count-1`);
  }
  const signed = signedPortion(xml);
  if (signed === undefined)
    throw new VisorError('invalidResponse', `eucalyptus: the manifest ${where} has no signed portion`);
  return { ...manifest, image: { ...manifest.image, parts: { ...manifest.image.parts, part: parts } }, signed };
}
